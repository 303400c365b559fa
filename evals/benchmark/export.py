"""A clip's pipeline output -> the prediction tree evals.scoring reads (evals.scoring.prediction_paths).

Binary subsets (s4, ms3, v3): each frame's union mask (masks/<name>_<k>.png, 0/255) is copied as is.
AVSS: each frame becomes a P-mode PNG of class indices with the VOC palette: objects are painted in increasing
box score (the most confident object wins where masks overlap), each with the class of its phrase
(evals.benchmark.phrases); an unmapped phrase paints nothing and is counted.
A failed clip gets all-background frames at the frame size: it is scored as an empty prediction.
Every file is written under a temporary name and renamed, so the tree never holds a half-written PNG.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from evals.benchmark.phrases import class_of
from evals.datasets import EvalClip
from evals.datasets.palette import voc_palette
from evals.scoring import prediction_paths
from tools.datamodel import FrameMasks
from tools.runfiles import atomic_path, write_mask_png


def write_index_png(path: Path, classes: np.ndarray) -> None:
    """(H, W) class indices 0..255 -> P-mode PNG with the VOC palette, atomically."""
    image = Image.fromarray(classes.astype(np.uint8))
    image.putpalette(voc_palette(256).tobytes())
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def semantic_frame(frame: FrameMasks, table: dict[str, int], unmapped: Counter[str]) -> np.ndarray:
    """(H, W) uint8 class indices of one frame; objects of unmapped phrases are counted in `unmapped`."""
    out = np.zeros((frame.height, frame.width), dtype=np.uint8)
    for obj in sorted(frame.objects, key=lambda o: o.box_score):  # stable: equal scores keep detection order
        index = class_of(obj.phrase, table)
        if index is None:
            unmapped[obj.phrase] += 1
            continue
        out[obj.mask] = index
    return out


def export_result(
    clip: EvalClip,
    run_dir: Path,
    result: dict,
    pred_dir: Path,
    table: dict[str, int] | None = None,
    unmapped: Counter[str] | None = None,
) -> None:
    """Write the predictions of a finished clip; `table` (phrase -> class) is required for AVSS."""
    paths = prediction_paths(clip, pred_dir)
    for frame, path in zip(result["frames"], paths, strict=True):
        if clip.is_semantic:
            if table is None:
                raise ValueError("AVSS predictions need a phrase -> class table")
            counts = unmapped if unmapped is not None else Counter()
            classes = semantic_frame(FrameMasks.from_dict(frame), table, counts)
            write_index_png(path, classes)
        else:
            with atomic_path(path) as tmp:
                shutil.copyfile(run_dir / frame["mask_file"], tmp)


def export_empty(clip: EvalClip, pred_dir: Path) -> None:
    """All-background predictions, at the clip's size, for a clip that produced none. Nothing is written when no
    picture of the clip can be read: its annotated frames then fail scoring on their unreadable ground truth."""
    size = _clip_size(clip)
    if size is None:
        return
    width, height = size
    for path in prediction_paths(clip, pred_dir):
        if clip.is_semantic:
            write_index_png(path, np.zeros((height, width), dtype=np.uint8))
        else:
            write_mask_png(path, np.zeros((height, width), dtype=bool))


def _clip_size(clip: EvalClip) -> tuple[int, int] | None:
    """(width, height) of the clip's pictures, all of one size: from its ground truth where it has some (what the
    predictions are scored against), else from its frames; None when none can be read. A clip often fails because a
    frame is damaged, so a damaged one is skipped rather than raised."""
    for path in (*(p for p in clip.gt_mask_paths if p is not None), *clip.frame_paths):
        try:
            with Image.open(path) as image:
                return image.size
        except (OSError, SyntaxError, ValueError):  # PIL.UnidentifiedImageError is an OSError
            continue
    return None
