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

    Frames are loaded `embed_batch_size` at a time (the segmenter's, 1 when it has none) and a caching segmenter
    encodes that many in one pass (`embed_frames`), so at most that many frames are in memory at a time."""
    batch = max(1, getattr(segmenter, "embed_batch_size", 1))
    pairs = list(zip(frames, detections, strict=True))
    for lo in range(0, len(pairs), batch):
        chunk = pairs[lo : lo + batch]
        loaded = {k: load_frame(frame, max_side) for k, (frame, dets) in enumerate(chunk) if len(dets)}
        embed_frames = getattr(segmenter, "embed_frames", None)
        if embed_frames is not None and len(loaded) > 1:
            embed_frames([chunk[k][0] for k in loaded], [image for image, _ in loaded.values()])
        for k, (frame, dets) in enumerate(chunk):
            if k not in loaded:
                yield FrameMasks(frame.index, frame.height, frame.width)
                continue
            image, scale = loaded.pop(k)
            yield _segment_frame(segmenter, frame, image, scale, dets)


def _segment_frame(
    segmenter: Segmenter, frame: FrameRef, image: Image.Image, scale: float, dets: Detections
) -> FrameMasks:
    """The frame's masks at its original size; `image` is the frame as the model sees it, `scale` model px per
    original px."""
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
    return FrameMasks(frame.index, frame.height, frame.width, objects)
