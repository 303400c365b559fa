"""AVSBench-semantic (AVSS) layout, and the V3 open-vocabulary test list that reuses its tree.

<root> (or <root>/AVSBench_semantic):
    metadata.csv         columns vid,uid,s_min,s_sec,a_obj,split,label (label: v1s | v1m | v2)
    label2idx.json       class index = key POSITION (0 = background; 71 keys in the official file)
    <label>/<uid>/frames/<i>.jpg             i = 0..4 (v1s, v1m) or 0..9 (v2)
    <label>/<uid>/labels_rgb/<i>.png         PASCAL-VOC colour map of class indices (the GT the official code reads)
    <label>/<uid>/labels_semantic/<i>.png    (not read: the official evaluation decodes labels_rgb)
    <label>/<uid>/audio.wav
V3 (GAVS): meta_v3_unseen.csv, same columns, split column "unseen", rows pointing into the AVSS tree; scored as
binary masks (GT = labels_rgb > 0).
"""

from __future__ import annotations

from pathlib import Path

from evals.datasets.categories import readable_classes, split_a_obj
from evals.datasets.csvio import read_table
from evals.datasets.paths import require_files, resolve_root, select_rows
from evals.datasets.record import EvalClip, Subset
from tools.errors import InputError
from tools.runfiles import read_input_json

AVSS_DIR = "AVSBench_semantic"
AVSS_CSV = "metadata.csv"
V3_CSV = "meta_v3_unseen.csv"
LABEL2IDX = "label2idx.json"
AVSS_COLUMNS: tuple[str, ...] = ("vid", "uid", "s_min", "s_sec", "a_obj", "split", "label")
FRAMES_PER_LABEL: dict[str, int] = {"v1s": 5, "v1m": 5, "v2": 10}


def resolve_avss_root(root: str | Path) -> Path:
    """The folder holding metadata.csv: `root` itself or `root/AVSBench_semantic`."""
    return resolve_root(root, AVSS_CSV, (AVSS_DIR,), "AVSS")


def read_avss_classes(root: str | Path) -> list[str]:
    """Class names in index order from label2idx.json (index = key position; index 0 is background)."""
    path = resolve_avss_root(root) / LABEL2IDX
    if not path.is_file():
        raise InputError(f"missing AVSS class list: {path}")
    data = read_input_json(path)
    if not isinstance(data, dict) or len(data) < 2:
        raise InputError(f"malformed AVSS class list {path}: expected a JSON object with at least 2 keys")
    return list(data)


def avss_clip(base: Path, row: dict[str, str], subset: Subset, csv_path: Path) -> EvalClip:
    """Record for one metadata row (AVSS or V3) under the resolved AVSS root `base` (no file checks)."""
    uid, label, split = row["uid"], row["label"], row["split"]
    if not uid:
        raise InputError(f"malformed metadata CSV {csv_path}: empty uid in row {row}")
    if label not in FRAMES_PER_LABEL:
        raise InputError(f"malformed metadata CSV {csv_path}: unknown label {label!r} for uid {uid}")
    n = FRAMES_PER_LABEL[label]
    folder = base / label / uid
    # v1s are the S4 videos: like S4, their TRAIN split is annotated on the first frame only.
    annotated = 1 if (label == "v1s" and split == "train") else n
    tokens = split_a_obj(row["a_obj"])
    return EvalClip(
        subset=subset,
        split=split,
        name=uid,
        category=None,
        label=label,
        frame_paths=tuple(folder / "frames" / f"{i}.jpg" for i in range(n)),
        gt_mask_paths=tuple(folder / "labels_rgb" / f"{i}.png" if i < annotated else None for i in range(n)),
        audio_path=folder / "audio.wav",
        class_names=readable_classes(tokens),
        raw_classes=tokens,
    )


def _load_rows(
    base: Path,
    csv_path: Path,
    subset: Subset,
    split: str | None,
    limit: int | None,
    labels: tuple[str, ...] | None,
    check_files: bool,
) -> list[EvalClip]:
    header, rows = read_table(csv_path, required=AVSS_COLUMNS)
    if labels is not None:
        label_col = header.index("label")
        rows = [r for r in rows if r[label_col] in labels]
    selected = select_rows(rows, header.index("split"), split, limit, csv_path)
    clips = [avss_clip(base, dict(zip(header, r, strict=True)), subset, csv_path) for r in selected]
    if check_files:
        require_files(clips)
    return clips


def load_avss(
    root: str | Path,
    *,
    split: str | None = "test",
    limit: int | None = None,
    check_files: bool = True,
    labels: tuple[str, ...] | None = None,
) -> list[EvalClip]:
    """AVSS clips in CSV order; `labels` keeps only some label folders, e.g. ("v2",)."""
    base = resolve_avss_root(root)
    return _load_rows(base, base / AVSS_CSV, "avss", split, limit, labels, check_files)


def load_v3(
    root: str | Path,
    *,
    split: str | None = None,
    limit: int | None = None,
    check_files: bool = True,
    v3_csv: str | Path | None = None,
) -> list[EvalClip]:
    """V3 clips (binary GT) from `v3_csv` (default `<AVSS root>/meta_v3_unseen.csv`), files from the AVSS tree.

    The list is a test list whose split column reads "unseen": `split` None or "test" keeps every row.
    """
    base = resolve_avss_root(root)
    csv_path = Path(v3_csv).expanduser() if v3_csv is not None else base / V3_CSV
    wanted = None if split in (None, "test") else split
    return _load_rows(base, csv_path, "v3", wanted, limit, None, check_files)
