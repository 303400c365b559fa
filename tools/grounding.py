"""Grounding tool: phrases -> boxes for a clip's frames, in each frame's original pixels."""

from __future__ import annotations

from collections.abc import Sequence

from tools.datamodel import Detections
from tools.frames import FrameRef, load_frame
from tools.models.base import Grounder


def ground_frames(
    grounder: Grounder,
    frames: Sequence[FrameRef],
    phrases: Sequence[Sequence[str]],
    box_threshold: float,
    text_threshold: float,
    max_side: int,
) -> list[Detections]:
    """One Detections per frame (empty where the frame has no phrase), batched over frames.

    Frames are downscaled to `max_side` for the model and boxes scaled back to original pixels. Frames are decoded
    and handed over as many at a time as the grounder forwards in one pass (its `batch_size`, else 4).
    """
    results: dict[int, Detections] = {f.index: Detections.empty(f.index) for f in frames}
    todo = [(f, p) for f, p in zip(frames, phrases, strict=True) if p]
    batch_size = getattr(grounder, "batch_size", 4)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        loaded = [load_frame(f, max_side) for f, _ in chunk]
        found = grounder.detect(
            [image for image, _ in loaded],
            [p for _, p in chunk],
            [f.index for f, _ in chunk],
            box_threshold,
            text_threshold,
        )
        for (frame, _), (_, scale), dets in zip(chunk, loaded, found, strict=True):
            results[frame.index] = Detections(frame.index, dets.boxes / scale, dets.scores, dets.phrases)
    return [results[f.index] for f in frames]
