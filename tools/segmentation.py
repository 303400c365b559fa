"""Segmentation tool: boxes -> masks, every frame on its own (the paper's image mode), at original resolution."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from tools.datamodel import Detections, FrameMasks, ObjectMask
from tools.frames import FrameRef, load_frame
from tools.models.base import Segmenter


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool (h, w) mask to (height, width)."""
    if mask.shape == (height, width):
        return mask
    image = Image.fromarray(mask.astype(np.uint8) * 255, mode="L").resize((width, height), Image.Resampling.NEAREST)
    return np.array(image) > 127


def segment_frames(
    segmenter: Segmenter, frames: Sequence[FrameRef], detections: Sequence[Detections], max_side: int
) -> Iterator[FrameMasks]:
    """Yield one FrameMasks per frame (objects in detection order), one frame in memory at a time."""
    for frame, dets in zip(frames, detections, strict=True):
        if len(dets) == 0:
            yield FrameMasks(frame.index, frame.height, frame.width)
            continue
        image, scale = load_frame(frame, max_side)
        # Segmenters that cache image embeddings (tools/embedding_cache.py) key them by the frame file.
        keyed = getattr(segmenter, "segment_frame", None)
        boxes = dets.boxes * scale
        masks, mask_scores = keyed(frame, image, boxes) if keyed else segmenter.segment(image, boxes)
        objects = tuple(
            ObjectMask(resize_mask(mask, frame.height, frame.width), phrase, tuple(box), float(box_score), float(ms))
            for mask, phrase, box, box_score, ms in zip(
                masks, dets.phrases, dets.boxes.tolist(), dets.scores, mask_scores, strict=True
            )
        )
        yield FrameMasks(frame.index, frame.height, frame.width, objects)
