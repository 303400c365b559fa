"""Locating a subset's folder under a user-given root, and checking that every listed file exists."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from evals.datasets.record import EvalClip
from tools.errors import InputError


def resolve_root(root: str | Path, marker: str, children: Sequence[str], what: str) -> Path:
    """Return the folder holding `marker` (the subset's metadata CSV).

    Accepts the subset folder itself or any folder such that `<root>/<child>/<marker>` exists for one of
    `children` (tried in order), e.g. "Single-source" or "AVSBench_object/Single-source".
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InputError(f"{what} root is not a folder: {base}")
    for candidate in (base, *(base / child for child in children)):
        if (candidate / marker).is_file():
            return candidate
    tried = ", ".join(str(base / c / marker) for c in ("", *children))
    raise InputError(f"no {what} metadata under {base}: looked for {tried}")


def require_files(clips: Iterable[EvalClip]) -> None:
    """Raise InputError naming the first missing file of `clips` (frames, masks, audio) and the missing count."""
    missing = [p for clip in clips for p in clip.all_paths() if not p.is_file()]
    if missing:
        raise InputError(f"missing dataset file: {missing[0]} ({len(missing)} listed files missing in total)")


def select_rows(
    rows: list[list[str]], split_col: int, split: str | None, limit: int | None, csv_path: Path
) -> list[list[str]]:
    """Keep rows whose split column equals `split` (all when None), then the first `limit` of them.

    An unknown split or a limit below 1 is an InputError: an empty evaluation is never what the user meant.
    """
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    kept = rows if split is None else [r for r in rows if r[split_col] == split]
    if not kept:
        found = sorted({r[split_col] for r in rows})
        raise InputError(f"no rows with split {split!r} in {csv_path} (splits present: {found})")
    return kept if limit is None else kept[:limit]
