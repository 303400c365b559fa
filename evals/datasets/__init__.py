"""AVSBench loaders: one module per official layout, each returning uniform `EvalClip` records.

`load_clips(root, subset, ...)` dispatches on the subset name ("s4", "ms3", "avss", "v3"); the per-subset loaders
(`load_s4`, `load_ms3`, `load_avss`, `load_v3`) take the same options plus their own.
"""

from __future__ import annotations

from pathlib import Path

from evals.datasets.avss import load_avss, load_v3, read_avss_classes
from evals.datasets.ms3 import load_ms3
from evals.datasets.record import SUBSETS, EvalClip, Subset
from evals.datasets.s4 import load_s4
from tools.errors import InputError

__all__ = [
    "SUBSETS",
    "EvalClip",
    "Subset",
    "load_avss",
    "load_clips",
    "load_ms3",
    "load_s4",
    "load_v3",
    "read_avss_classes",
]


def load_clips(
    root: str | Path,
    subset: str,
    *,
    split: str | None = "test",
    limit: int | None = None,
    check_files: bool = True,
) -> list[EvalClip]:
    """Load the clips of one subset in CSV order.

    `root` is the subset folder or a folder above it (see each loader). `split=None` keeps every split; for "v3"
    the split column reads "unseen", and "test" is accepted as the name of that list. `limit` keeps the first N
    clips after the split filter. With `check_files`, every listed frame, mask and audio file must exist, else
    InputError names the first missing path and how many are missing.
    """
    loaders = {"s4": load_s4, "ms3": load_ms3, "avss": load_avss, "v3": load_v3}
    if subset not in loaders:
        raise InputError(f"unknown subset {subset!r}: choose one of {', '.join(SUBSETS)}")
    return loaders[subset](root, split=split, limit=limit, check_files=check_files)
