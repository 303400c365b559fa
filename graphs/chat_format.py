"""Small text pieces the chat's answers and explanations share: frames as users count them (from 1, as the mask
files are) with their times, groups of consecutive frames that agree, and untrusted text quoted safely."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from prompts.translate import sanitize
from tools.datamodel import frame_number

T = TypeVar("T")
MAX_QUOTE_CHARS = 160


def frame_label(frames: Sequence[dict[str, Any]], k: int) -> str:
    """'frame 2 at 1.96 s' for the frame at position k."""
    return f"frame {frame_number(k)} at {frames[k]['timestamp_s']:.2f} s"


def span_label(frames: Sequence[dict[str, Any]], positions: Sequence[int]) -> str:
    """'frame 2 at 1.96 s', or 'frames 1-3 (0.96-2.96 s)' for consecutive positions, or a list otherwise."""
    if len(positions) == 1:
        return frame_label(frames, positions[0])
    times = f"{frames[positions[0]]['timestamp_s']:.2f}-{frames[positions[-1]]['timestamp_s']:.2f} s"
    return f"frames {frame_numbers(positions)} ({times})"


def frame_numbers(positions: Sequence[int]) -> str:
    """'1-3' or '1, 4' (counted from 1) for sorted or unsorted positions."""
    positions = sorted(set(positions))
    if len(positions) > 1 and positions == list(range(positions[0], positions[-1] + 1)):
        return f"{frame_number(positions[0])}-{frame_number(positions[-1])}"
    return ", ".join(str(frame_number(k)) for k in positions)


def group_runs(values: Sequence[T], key: Callable[[T], Any] = lambda v: v) -> list[list[int]]:
    """Positions grouped into runs of consecutive equal keys: [[0, 1, 2], [3]]."""
    runs: list[list[int]] = []
    for k, value in enumerate(values):
        if runs and key(values[runs[-1][-1]]) == key(value):
            runs[-1].append(k)
        else:
            runs.append([k])
    return runs


def quote(text: str, limit: int = MAX_QUOTE_CHARS) -> str:
    """Untrusted text (a caption, a user line) quoted on one line, neutralised and capped."""
    cleaned = sanitize(str(text))
    return '"' + (cleaned if len(cleaned) <= limit else cleaned[: limit - 1].rstrip() + "…") + '"'


def listing(items: Sequence[str], empty: str = "nothing") -> str:
    """'a, b and c'."""
    items = [i for i in items if i]
    if not items:
        return empty
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def findings_text(findings: Sequence[dict[str, Any]], limit: int = 4) -> str:
    """Critique findings grouped by problem and phrase, with frames counted from 1: 'empty mask (piano) in frames
    1-3; low score (man) in frame 2'."""
    groups: dict[tuple[str, str | None], list[int]] = {}
    for finding in findings:
        frames = groups.setdefault((finding["problem"], finding.get("phrase")), [])
        if finding.get("frame_index") is not None:
            frames.append(finding["frame_index"])
    parts = []
    for (problem, phrase), frames in list(groups.items())[:limit]:
        what = problem.replace("_", " ") + (f" ({sanitize(phrase)})" if phrase else "")
        where = f" in frame{'s' if len(set(frames)) > 1 else ''} {frame_numbers(frames)}" if frames else ""
        parts.append(what + where)
    more = f"; and {len(groups) - limit} more" if len(groups) > limit else ""
    return "; ".join(parts) + more
