"""Score a folder of predicted masks against AVSBench ground truth with the official metrics (evals.metrics).

Prediction layout (one PNG per frame, named like the GT so a GT folder is itself a valid prediction folder):
    s4         PRED/<category>/<name>/<name>_<k>.png      k = 1..5     binary: pixel > 0 is the object (0/255 L)
    ms3        PRED/<name>/<name>_<k>.png                 k = 1..5     binary
    v3         PRED/<label>/<uid>/<i>.png                 i = 0..T-1   binary (any non-zero pixel / colour)
    avss       PRED/<label>/<uid>/<i>.png                 i = 0..T-1   class indices: P or L mode -> the pixel value
                                                                       (palette index) is the class; RGB -> VOC
                                                                       colour decoded (unknown colour = error)
Only frames with a GT mask are scored and need a prediction (S4 and AVSS v1s TRAIN: the first frame only).
Predictions are hard masks: each is passed to the metrics as logits 0/1 (sigmoid 0.5 / 0.731), see evals.metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evals.datasets import EvalClip, load_clips, read_avss_classes
from evals.datasets.masks import load_binary_mask, load_index_mask, load_semantic_labels
from evals.datasets.palette import AVSS_NUM_CLASSES
from evals.metrics import BinaryMetricAccumulator, SemanticMetricAccumulator, resize_nearest
from tools.errors import InputError


@dataclass
class ScoreReport:
    """Aggregate scores (see the accumulators in evals.metrics) plus one row per video."""

    subset: str
    aggregate: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


def prediction_paths(clip: EvalClip, pred_dir: str | Path) -> list[Path]:
    """Where the prediction of each frame of `clip` lives under `pred_dir` (one path per frame, in order)."""
    base = Path(pred_dir)
    n = clip.frame_count
    if clip.subset == "s4":
        folder = base / str(clip.category) / clip.name
        return [folder / f"{clip.name}_{k}.png" for k in range(1, n + 1)]
    if clip.subset == "ms3":
        return [base / clip.name / f"{clip.name}_{k}.png" for k in range(1, n + 1)]
    return [base / str(clip.label) / clip.name / f"{i}.png" for i in range(n)]


def load_ground_truth(clip: EvalClip, num_classes: int = AVSS_NUM_CLASSES) -> list[np.ndarray]:
    """GT of the annotated frames, in order: (H, W) bool for S4/MS3/V3 (V3: labels_rgb > 0), int64 classes for AVSS."""
    paths = [clip.gt_mask_paths[i] for i in clip.annotated_frames]
    if clip.is_semantic:
        return [load_semantic_labels(p, num_classes) for p in paths if p is not None]
    return [load_binary_mask(p) for p in paths if p is not None]


def _stack(frames: list[np.ndarray], clip: EvalClip, what: str) -> np.ndarray:
    """(T, H, W) from per-frame arrays; frames of one video must share a size."""
    if len({f.shape for f in frames}) != 1:
        raise InputError(f"{what} frames of {clip.name} differ in size: {sorted({f.shape for f in frames})}")
    return np.stack(frames)


def require_predictions(clips: Sequence[EvalClip], pred_dir: Path) -> None:
    """InputError naming the first missing prediction of an annotated frame and how many are missing."""
    missing = [
        path
        for clip in clips
        for i, path in enumerate(prediction_paths(clip, pred_dir))
        if clip.gt_mask_paths[i] is not None and not path.is_file()
    ]
    if missing:
        raise InputError(f"missing prediction file: {missing[0]} ({len(missing)} prediction files missing in total)")


def score_predictions(
    clips: Sequence[EvalClip],
    pred_dir: str | Path,
    *,
    fscore_batch_size: int = 1,
    pad_to: int | None = 10,
    num_classes: int = AVSS_NUM_CLASSES,
) -> ScoreReport:
    """Score the predictions under `pred_dir` for `clips` (all of one subset, in the order given).

    Binary subsets use BinaryMetricAccumulator(fscore_batch_size); AVSS uses SemanticMetricAccumulator(num_classes,
    pad_to). Predictions of another size than the GT are resized to it with nearest neighbour. Every needed
    prediction file is checked before any is read.
    """
    if not clips:
        raise InputError("no clips to score")
    subsets = {c.subset for c in clips}
    if len(subsets) != 1:
        raise InputError(f"clips of several subsets cannot be scored together: {sorted(subsets)}")
    subset = subsets.pop()
    base = Path(pred_dir).expanduser()
    if not base.is_dir():
        raise InputError(f"prediction folder not found: {base}")
    require_predictions(clips, base)
    semantic = subset == "avss"
    acc: BinaryMetricAccumulator | SemanticMetricAccumulator = (
        SemanticMetricAccumulator(num_classes, pad_to) if semantic else BinaryMetricAccumulator(fscore_batch_size)
    )
    rows = []
    for clip in clips:
        gt_frames = load_ground_truth(clip, num_classes)
        paths = prediction_paths(clip, base)
        preds = []
        for i, gt in zip(clip.annotated_frames, gt_frames, strict=True):
            pred = load_index_mask(paths[i], num_classes) if semantic else load_binary_mask(paths[i])
            preds.append(resize_nearest(pred[None], gt.shape)[0])
        row = acc.add(_stack(preds, clip, "prediction"), _stack(gt_frames, clip, "ground-truth"), name=clip.name)
        rows.append({"split": clip.split, "category": clip.category, "label": clip.label, **row})
    return ScoreReport(subset=subset, aggregate={"subset": subset, **acc.aggregate()}, rows=rows)


def score_folder(
    root: str | Path,
    subset: str,
    pred_dir: str | Path,
    *,
    split: str | None = "test",
    limit: int | None = None,
    fscore_batch_size: int = 1,
    pad_to: int | None = 10,
) -> ScoreReport:
    """Load `subset` from the dataset `root` (see evals.datasets.load_clips) and score `pred_dir` against it.

    AVSS takes its class count from the dataset's label2idx.json.
    """
    clips = load_clips(root, subset, split=split, limit=limit)
    num_classes = len(read_avss_classes(root)) if subset == "avss" else AVSS_NUM_CLASSES
    return score_predictions(
        clips, pred_dir, fscore_batch_size=fscore_batch_size, pad_to=pad_to, num_classes=num_classes
    )
