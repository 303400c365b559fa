"""The built-in handler's answers, composed only from tool results kept in state: phrases per frame with
timestamps, captions and tags, detection scores, mask coverage, the last verdict, the written outputs, and trace
events for "why". Frames are counted from 1 (as the mask files are) and always come with their times; captions
and other model text are quoted, neutralised, never followed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from graphs.chat_format import findings_text, frame_label, group_runs, listing, quote, span_label
from graphs.chat_intents import Request
from graphs.chat_state import latest_attempt
from graphs.stages import read_masks
from tools.datamodel import FrameMasks

MAX_TAGS = 3


def nothing_audible(state: dict[str, Any]) -> str:
    level = state["audio"].get("rms_dbfs")
    where = f" (level {level} dBFS)" if level is not None else ""
    return f"Nothing is audible in this clip{where}, so nothing is making a sound and there is nothing to segment."


def what_is_sounding(state: dict[str, Any], heard: list[list[str]], request: Request, oracle: bool) -> str:
    """Per group of frames naming the same objects: the objects, the first caption, the top tags and the boxes."""
    frames = state["frames"]
    positions = _focus_positions(frames, request)
    source = "the phrases given with --phrases" if oracle else "the audio of each frame"
    if len(positions) == 1 and (request.frame is not None or request.time_s is not None):
        header = f"At {frame_label(frames, positions[0])} (the sampled frame nearest to what you asked), from {source}:"
        groups = [positions]
    else:
        header = f"What is making the sound, from {source}:"
        groups = group_runs(positions, key=lambda k: tuple(heard[k]))
        groups = [[positions[i] for i in run] for run in groups]
    lines = [header]
    for group in groups:
        lines.append(f"- {span_label(frames, group)}: {_frame_facts(state, heard, group)}")
    lines.extend(_current_answer(state))
    return "\n".join(lines)


def _focus_positions(frames: list[dict[str, Any]], request: Request) -> list[int]:
    if request.frame is not None:
        return [min(request.frame, len(frames) - 1)]
    if request.time_s is not None:
        return [min(range(len(frames)), key=lambda k: abs(frames[k]["timestamp_s"] - request.time_s))]
    return list(range(len(frames)))


def _frame_facts(state: dict[str, Any], heard: list[list[str]], group: list[int]) -> str:
    first = group[0]
    named = listing(heard[first], empty="no sounding object named")
    facts = [named]
    captions = (state.get("captions") or [])[first : first + 1]
    if captions and captions[0]:
        facts.append(f"heard {quote(captions[0][0])}")
    tags = (state.get("tags") or [])[first : first + 1]
    if tags and tags[0]:
        facts.append("tags: " + ", ".join(f"{quote(label, 40)} {score:.2f}" for label, score in tags[0][:MAX_TAGS]))
    boxes = _box_facts(state, heard, group)
    if boxes:
        facts.append(boxes)
    return "; ".join(facts)


def _box_facts(state: dict[str, Any], heard: list[list[str]], group: list[int]) -> str:
    detections = state.get("detections") or []
    if not detections:
        return ""
    scores: dict[str, dict[int, float]] = {}  # phrase -> frame -> best box score there
    for k in group:
        for phrase, score in zip(detections[k]["phrases"], detections[k]["scores"], strict=True):
            best = scores.setdefault(phrase, {})
            best[k] = max(score, best.get(k, 0.0))
    asked = list(dict.fromkeys([*heard[group[0]], *(p for k in group for p in (state.get("phrases") or [])[k])]))
    threshold = (state.get("grounding") or {}).get("box_threshold")
    parts = []
    for phrase in asked:
        found = scores.get(phrase)
        if found:
            parts.append(f"{phrase} {max(found.values()):.2f} in {len(found)}/{len(group)} frames")
        elif phrase in (p for k in group for p in (state.get("phrases") or [])[k]):
            parts.append(f"{phrase} not found" + (f" at box threshold {threshold}" if threshold else ""))
    return "boxes: " + ", ".join(parts) if parts else ""


def _current_answer(state: dict[str, Any]) -> list[str]:
    """What the masks show now and how sure the last critique is, when there are masks."""
    lines = []
    masks_file = state.get("masks_file")
    if masks_file:
        lines.append("Masks now: " + _masks_summary(state, masks_file))
    attempt = latest_attempt(state)
    if attempt is not None:
        lines.append(verdict_line(attempt))
    elif masks_file:
        lines.append("The current masks were not critiqued.")
    return lines


def _masks_summary(state: dict[str, Any], masks_file: str) -> str:
    """Per run of frames segmenting the same phrases: each phrase with its objects per frame, best box score and
    the share of the frame its masks cover."""
    frames = state["frames"]
    masks = read_masks(masks_file)
    runs = group_runs(masks, key=lambda m: tuple(dict.fromkeys(o.phrase for o in m.objects)))
    return "; ".join(f"{span_label(frames, run)}: {_run_objects([masks[k] for k in run])}" for run in runs)


def _run_objects(masks: list[FrameMasks]) -> str:
    parts = []
    for phrase in dict.fromkeys(o.phrase for o in masks[0].objects):
        counts, covers, best = [], [], 0.0
        for frame in masks:
            mine = [o for o in frame.objects if o.phrase == phrase]
            union = np.logical_or.reduce([o.mask for o in mine])
            counts.append(len(mine))
            covers.append(float(union.sum()) / max(frame.height * frame.width, 1))
            best = max(best, *(o.box_score for o in mine))
        several = f"{_range(counts, '{}')} objects, " if max(counts) > 1 else ""
        parts.append(f"{phrase} ({several}box {best:.2f}, {_range(covers, '{:.0%}')} of the frame)")
    return listing(parts)


def _range(values: list[float], fmt: str) -> str:
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return low if low == high else f"{low}-{high}"


def verdict_line(attempt: dict[str, Any]) -> str:
    verdict = attempt["verdict"]
    head = f"Critique of round {attempt['round']}: {'ok' if verdict['ok'] else 'not ok'} (score {verdict['score']:.2f})"
    if verdict["ok"]:
        return head + "."
    problems = findings_text(attempt.get("findings", []))
    suggestion = f" Suggestion: {quote(verdict['suggestion'])}." if verdict.get("suggestion") else ""
    return head + (f": {problems}." if problems else ".") + suggestion


def segmented(state: dict[str, Any], note: str = "") -> str:
    """After a request that changed the masks: what is segmented where, the verdict, the flag, the files."""
    lines = [note] if note else []
    masks_file = state.get("masks_file")
    if masks_file:
        lines.append("Segmented: " + _masks_summary(state, masks_file))
    else:
        lines.append("Nothing is segmented: the masks are empty.")
    attempt = latest_attempt(state)
    if attempt is not None:
        lines.append(verdict_line(attempt))
    flagged = (state.get("saved") or {}).get("flagged")
    if flagged:
        lines.append(f"Flagged: {flagged}.")
    lines.append(written(state))
    return "\n".join(lines)


def written(state: dict[str, Any]) -> str:
    outputs = state.get("outputs") or {}
    if not outputs:
        return "Nothing was written yet."
    folder = Path(outputs["result"]).parent
    masks = Path(outputs["masks"])
    n = len(list(masks.glob("*.png"))) if masks.is_dir() else 0
    files = [f"masks/ ({n} PNG)", *(["overlay.mp4"] if "overlay" in outputs else []), "result.json"]
    return f"Wrote {listing(files)} in {folder}."


def edited(state: dict[str, Any], request: Request, before: list[list[str]], missing: list[str]) -> str:
    """After include / exclude / only: what changed, what could not be found, then the segmented summary."""
    was = listing(list(dict.fromkeys(p for frame in before for p in frame)))
    now = listing(list(dict.fromkeys(p for frame in state.get("phrases") or [] for p in frame)))
    note = f"You asked {asked_for(request)}: now looking for {now} (before: {was})."
    if missing:
        threshold = (state.get("grounding") or {}).get("box_threshold")
        note += f" Not found in any frame: {listing(missing)} (box threshold {threshold})."
    return segmented(state, note)


def asked_for(request: Request) -> str:
    """'for only the man', 'to include the piano', 'to exclude the dog'."""
    verb = {"only": "for only", "include": "to include", "exclude": "to exclude"}.get(request.kind, request.kind)
    return f"{verb} {listing([f'the {o}' for o in request.objects])}"


def not_present(request: Request, current: list[list[str]]) -> str:
    named = listing(list(dict.fromkeys(p for frame in current for p in frame)), empty="nothing yet")
    return f"{listing(list(request.objects))} is not among the objects I am segmenting ({named}); nothing changed."


def explained(result: dict[str, Any]) -> str:
    events = result.get("events", [])
    subject = result.get("subject")
    if not events:
        return "The trace has no decisions yet: nothing has been analysed in this conversation."
    if subject and result.get("matched"):
        header = f"From the trace, what concerns {quote(subject, 40)}:"
    elif subject:
        header = f"Nothing in the trace mentions {quote(subject, 40)}; the latest events:"
    else:
        header = "From the trace, the latest events:"
    lines = [header]
    for event in events:
        where = f"turn {event['turn']}" + (f", round {event['round']}" if event.get("round") is not None else "")
        lines.append(f"- {where}: {event['text']}")
    return "\n".join(lines)


def saved(state: dict[str, Any]) -> str:
    round_index = (state.get("saved") or {}).get("round")
    which = f" (the masks of round {round_index})" if round_index is not None else ""
    return written(state).replace("Wrote", "Saved", 1).rstrip(".") + which + "."


def nothing_to_save() -> str:
    return "Nothing is segmented yet, so there is nothing to save: say 'segment it' first."


def failed(error: str) -> str:
    return f"I could not do that: {error.removeprefix('Error: ')}"
