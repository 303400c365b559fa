"""AVSBench-object single-source (S4) layout.

<root>/Single-source/ (or that folder itself):
    s4_meta_data.csv                    name = column 0, category = column 2 (by position), column `split`
    s4_data/visual_frames/<split>/<category>/<name>/<name>_<k>.png     k = 1..5
    s4_data/gt_masks/<split>/<category>/<name>/<name>_<k>.png          0/255; TRAIN has only k = 1
    s4_data/audio_wav/<split>/<category>/<name>.wav
"""

from __future__ import annotations

from pathlib import Path

from evals.datasets.categories import s4_class_name
from evals.datasets.csvio import read_table
from evals.datasets.paths import require_files, resolve_root, select_rows
from evals.datasets.record import EvalClip
from tools.errors import InputError

S4_DIR = "Single-source"
S4_CSV = "s4_meta_data.csv"
S4_FRAMES = 5


def resolve_s4_root(root: str | Path) -> Path:
    """The folder holding s4_meta_data.csv: `root` itself, `root/Single-source` or `root/AVSBench_object/...`."""
    return resolve_root(root, S4_CSV, (S4_DIR, f"AVSBench_object/{S4_DIR}"), "S4")


def s4_clip(base: Path, name: str, category: str, split: str) -> EvalClip:
    """Record for one S4 video under the resolved root `base` (no file checks)."""
    data = base / "s4_data"
    frames = tuple(data / "visual_frames" / split / category / name / f"{name}_{k}.png" for k in range(1, 6))
    # The official train split annotates only the first frame (weak supervision).
    annotated = 1 if split == "train" else S4_FRAMES
    masks = tuple(
        data / "gt_masks" / split / category / name / f"{name}_{k}.png" if k <= annotated else None for k in range(1, 6)
    )
    return EvalClip(
        subset="s4",
        split=split,
        name=name,
        category=category,
        label=None,
        frame_paths=frames,
        gt_mask_paths=masks,
        audio_path=data / "audio_wav" / split / category / f"{name}.wav",
        class_names=(s4_class_name(category),),
        raw_classes=(category,),
    )


def load_s4(
    root: str | Path, *, split: str | None = "test", limit: int | None = None, check_files: bool = True
) -> list[EvalClip]:
    """S4 clips in CSV order (see module docstring for the layout and `load_clips` for the options)."""
    base = resolve_s4_root(root)
    csv_path = base / S4_CSV
    header, rows = read_table(csv_path, required=("split",), min_columns=3)
    split_col = header.index("split")
    clips = []
    for row in select_rows(rows, split_col, split, limit, csv_path):
        name, category = row[0], row[2]
        if not name or not category:
            raise InputError(f"malformed metadata CSV {csv_path}: empty name or category in row {row}")
        clips.append(s4_clip(base, name, category, row[split_col]))
    if check_files:
        require_files(clips)
    return clips
