"""Scoring a prediction tree for the benchmark: the official numbers plus per-video and per-class tables.

Binary subsets (s4, ms3, v3) get the official binary metrics. AVSS gets both the official semantic metrics
(71 classes, padded to 10 frames by default) and the binary metrics of foreground = any class, scored exactly like
V3 (GT = labels_rgb > 0), so `miou`/`fscore`/`fscore_binary` mean the same thing for every subset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from evals.datasets import EvalClip
from evals.scoring import ScoreReport, score_predictions

SUMMARY_KEYS = ("miou", "fscore", "fscore_binary", "n_videos", "n_frames", "fscore_batch_size")
SEMANTIC_KEYS = ("miou", "fscore", "miou_unpadded", "fscore_unpadded", "pad_to")
NO_CLASS = "(no class names)"


@dataclass
class BenchmarkScores:
    """binary: every subset (AVSS: foreground vs background); semantic: AVSS only."""

    binary: ScoreReport
    semantic: ScoreReport | None = None

    def summary(self) -> dict[str, Any]:
        """The headline numbers: binary ones for every subset, `semantic_*` for AVSS."""
        out = {k: self.binary.aggregate[k] for k in SUMMARY_KEYS}
        if self.semantic is not None:
            out |= {f"semantic_{k}": self.semantic.aggregate[k] for k in SEMANTIC_KEYS}
        return out


def score_tree(
    clips: Sequence[EvalClip],
    pred_dir: Path,
    *,
    fscore_batch_size: int = 1,
    pad_to: int | None = 10,
    num_classes: int = 71,
) -> BenchmarkScores:
    """Score `pred_dir` for `clips` (one subset) with evals.scoring."""
    semantic = None
    binary_clips = list(clips)
    if clips and clips[0].is_semantic:
        semantic = score_predictions(clips, pred_dir, pad_to=pad_to, num_classes=num_classes)
        # V3 reads the same tree and the same labels_rgb as binary masks: exactly the foreground question.
        binary_clips = [replace(c, subset="v3") for c in clips]
    binary = score_predictions(binary_clips, pred_dir, fscore_batch_size=fscore_batch_size)
    return BenchmarkScores(binary=binary, semantic=semantic)


def per_category(
    clips: Sequence[EvalClip], scores: BenchmarkScores, class_names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """One row per class: the mean per-video binary scores of the videos whose metadata names it (S4: the
    category; MS3/V3/AVSS: every a_obj token, so a video counts once for each of its classes), and for AVSS the
    official per-class semantic IoU and F. Rows sorted by class name; videos without classes under NO_CLASS."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for clip, row in zip(clips, scores.binary.rows, strict=True):
        for token in dict.fromkeys(clip.raw_classes or (NO_CLASS,)):
            groups.setdefault(token, []).append(row)
    index = {name: i for i, name in enumerate(class_names or ())}
    agg = scores.semantic.aggregate if scores.semantic is not None else None
    table = []
    for token in sorted(groups):
        rows = groups[token]
        entry: dict[str, Any] = {
            "class": token,
            "n_videos": len(rows),
            **{k: float(np.mean([r[k] for r in rows])) for k in ("miou", "fscore", "fscore_binary")},
        }
        if agg is not None:
            i = index.get(token)
            entry["class_index"] = i
            entry["semantic_iou"] = agg["per_class_iou"][i] if i is not None else None
            entry["semantic_fscore"] = agg["per_class_fscore"][i] if i is not None else None
        table.append(entry)
    return table
