"""AVSBench-object multi-source (MS3) layout.

<root>/Multi-sources/ (or that folder itself):
    ms3_meta_data.csv                   name = column 0, column `split`
    ms3_data/visual_frames/<name>/<name>.mp4_<k>.png    k = 1..5; no split folder, literal ".mp4"
    ms3_data/gt_masks/<split>/<name>/<name>_<k>.png     0/255, all 5 in every split
    ms3_data/audio_wav/<split>/<name>.wav

The MS3 CSV names no classes. The same videos are AVSBench-semantic's label "v1m" (uid = MS3 name), so class names
come from an AVSS metadata.csv: the one passed as `avss_root`, else one found beside the MS3 folder
(`<parent>/AVSBench_semantic` for parent = the MS3 folder's parent and grandparent), else none.
"""

from __future__ import annotations

from pathlib import Path

from evals.datasets.categories import readable_classes, split_a_obj
from evals.datasets.csvio import read_table
from evals.datasets.paths import require_files, resolve_root, select_rows
from evals.datasets.record import EvalClip
from tools.errors import InputError

MS3_DIR = "Multi-sources"
MS3_CSV = "ms3_meta_data.csv"
AVSS_DIR = "AVSBench_semantic"


def resolve_ms3_root(root: str | Path) -> Path:
    """The folder holding ms3_meta_data.csv: `root` itself, `root/Multi-sources` or `root/AVSBench_object/...`."""
    return resolve_root(root, MS3_CSV, (MS3_DIR, f"AVSBench_object/{MS3_DIR}"), "MS3")


def find_avss_metadata(ms3_root: Path, avss_root: str | Path | None) -> Path | None:
    """metadata.csv to read MS3 class names from; an explicit `avss_root` must contain one."""
    if avss_root is not None:
        explicit = Path(avss_root).expanduser()
        for candidate in (explicit / "metadata.csv", explicit / AVSS_DIR / "metadata.csv"):
            if candidate.is_file():
                return candidate
        raise InputError(f"no AVSS metadata.csv under {explicit}")
    for parent in (ms3_root.parent, ms3_root.parent.parent):
        candidate = parent / AVSS_DIR / "metadata.csv"
        if candidate.is_file():
            return candidate
    return None


def v1m_classes(metadata_csv: Path) -> dict[str, tuple[str, ...]]:
    """uid -> a_obj tokens for the AVSS rows labelled "v1m" (the MS3 videos)."""
    header, rows = read_table(metadata_csv, required=("uid", "a_obj", "label"))
    uid, a_obj, label = (header.index(c) for c in ("uid", "a_obj", "label"))
    return {r[uid]: split_a_obj(r[a_obj]) for r in rows if r[label] == "v1m"}


def ms3_clip(base: Path, name: str, split: str, tokens: tuple[str, ...] = ()) -> EvalClip:
    """Record for one MS3 video under the resolved root `base` (no file checks)."""
    data = base / "ms3_data"
    return EvalClip(
        subset="ms3",
        split=split,
        name=name,
        category=None,
        label=None,
        frame_paths=tuple(data / "visual_frames" / name / f"{name}.mp4_{k}.png" for k in range(1, 6)),
        gt_mask_paths=tuple(data / "gt_masks" / split / name / f"{name}_{k}.png" for k in range(1, 6)),
        audio_path=data / "audio_wav" / split / f"{name}.wav",
        class_names=readable_classes(tokens),
        raw_classes=tokens,
    )


def load_ms3(
    root: str | Path,
    *,
    split: str | None = "test",
    limit: int | None = None,
    check_files: bool = True,
    avss_root: str | Path | None = None,
) -> list[EvalClip]:
    """MS3 clips in CSV order; class names from AVSS metadata when available (see module docstring)."""
    base = resolve_ms3_root(root)
    csv_path = base / MS3_CSV
    header, rows = read_table(csv_path, required=("split",))
    split_col = header.index("split")
    metadata = find_avss_metadata(base, avss_root)
    classes = v1m_classes(metadata) if metadata is not None else {}
    clips = []
    for row in select_rows(rows, split_col, split, limit, csv_path):
        if not row[0]:
            raise InputError(f"malformed metadata CSV {csv_path}: empty name in row {row}")
        clips.append(ms3_clip(base, row[0], row[split_col], classes.get(row[0], ())))
    if check_files:
        require_files(clips)
    return clips
