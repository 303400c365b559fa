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
    """Yield one FrameMasks per frame (objects in detection order).

    A caching segmenter (tools/embedding_cache.py `segment_frames`) takes frames `embed_batch_size` at a time and
    encodes those it has not cached in one pass; others take one frame at a time. Either way at most that many
    frames are in memory, and frames without detections are neither loaded nor encoded."""
    batched = getattr(segmenter, "segment_frames", None)
    size = max(1, getattr(segmenter, "embed_batch_size", 1)) if batched else 1
    pairs = list(zip(frames, detections, strict=True))
    for lo in range(0, len(pairs), size):
        chunk = pairs[lo : lo + size]
        prompted = [k for k, (_, dets) in enumerate(chunk) if len(dets)]
        loaded = [load_frame(chunk[k][0], max_side) for k in prompted]
        images = [image for image, _ in loaded]
        boxes = [chunk[k][1].boxes * scale for k, (_, scale) in zip(prompted, loaded, strict=True)]
        if batched:
            answers = batched([chunk[k][0] for k in prompted], images, boxes)
        else:
            answers = [segmenter.segment(image, b) for image, b in zip(images, boxes, strict=True)]
        by_position = dict(zip(prompted, answers, strict=True))
        for k, (frame, dets) in enumerate(chunk):
            if k in by_position:
                yield _frame_masks(frame, dets, *by_position[k])
            else:
                yield FrameMasks(frame.index, frame.height, frame.width)


def _frame_masks(frame: FrameRef, dets: Detections, masks: np.ndarray, mask_scores: np.ndarray) -> FrameMasks:
    """The frame's objects, in detection order: masks (N, h, w) bool at the model's size, resized to the frame's."""
    objects = tuple(
        ObjectMask(resize_mask(mask, frame.height, frame.width), phrase, tuple(box), float(box_score), float(score))
        for mask, phrase, box, box_score, score in zip(
            masks, dets.phrases, dets.boxes.tolist(), dets.scores, mask_scores, strict=True
        )
    )
    return FrameMasks(frame.index, frame.height, frame.width, objects)
