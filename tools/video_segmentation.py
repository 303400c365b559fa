"""Video mode with a text-prompted video model (PAPER.md §5: SAM 3): the clip's phrases go in as text prompts, and
the model detects and tracks every instance they name, frame by frame. Pure logic: no model is imported here.

Frame indices are FrameRef.index / FrameMasks.frame_index (the clip's sampled frames).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from tools.datamodel import FrameMasks, ObjectMask
from tools.frames import FrameRef
from tools.models.base import ModelSpec
from tools.rle import encode_rle, rle_box


class VideoInstances(NamedTuple):
    """The instances a video model shows on one frame.

    frame_index: FrameRef.index; object_ids: N ints naming each instance across the clip; prompts: the text prompt
    that found each; masks: bool (N, H, W) at the frame's original size; scores: float32 (N,) detection scores in
    [0, 1]; tracker_scores: float32 (N,) the tracker's presence score on this frame (the detection score on the
    frame an instance is first found, when the tracker has not run on it yet).
    """

    frame_index: int
    object_ids: list[int]
    prompts: list[str]
    masks: np.ndarray
    scores: np.ndarray
    tracker_scores: np.ndarray


@runtime_checkable
class VideoSegmenter(Protocol):
    """A text-prompted video model: prompts -> every instance they name, detected and tracked through a clip
    (tools/models/sam3_detect_track.py)."""

    spec: ModelSpec

    def segment_video(
        self, frames: Sequence[FrameRef], prompts: Sequence[str], threshold: float, max_side: int | None = None
    ) -> Iterator[VideoInstances]:
        """Yield one VideoInstances per frame, in frame order; `threshold` is the detection score an instance needs;
        frames are decoded with the longer side at most `max_side` px. No prompt: empty frames, no model run."""
        ...


def segment_video(
    segmenter: VideoSegmenter,
    frames: Sequence[FrameRef],
    phrases: Sequence[Sequence[str]],
    threshold: float,
    max_side: int | None = None,
) -> Iterator[FrameMasks]:
    """One FrameMasks per frame (frame order) for the phrases each frame asks for (`phrases[k]` for `frames[k]`).

    Every phrase of the clip is one prompt for the whole clip, so an object is tracked through frames where its
    phrase is not asked; a frame keeps only the instances of its own phrases, and a frame asking nothing shows
    nothing. Each object keeps the model's object id, its detection score as box_score, the tracker's score on the
    frame as mask_score, and its mask's tight box; masks are held as COCO RLE. Empty masks are left out. Blank
    phrases are no prompt.
    """
    if len(phrases) != len(frames):
        raise ValueError(f"{len(phrases)} phrase lists for {len(frames)} frames")
    prompts = list(dict.fromkeys(p for asked in phrases for p in asked if p.strip()))
    asked_at = {ref.index: set(asked) for ref, asked in zip(frames, phrases, strict=True)}
    sizes = {ref.index: (ref.height, ref.width) for ref in frames}
    for found in segmenter.segment_video(frames, prompts, threshold, max_side):
        height, width = sizes[found.frame_index]
        objects = []
        for k, prompt in enumerate(found.prompts):
            if prompt not in asked_at[found.frame_index] or not found.masks[k].any():
                continue
            rle = encode_rle(found.masks[k])
            box_score, mask_score = float(found.scores[k]), float(found.tracker_scores[k])
            objects.append(
                ObjectMask.from_rle(rle, prompt, rle_box(rle), box_score, mask_score, object_id=found.object_ids[k])
            )
        yield FrameMasks(found.frame_index, height, width, tuple(objects))
