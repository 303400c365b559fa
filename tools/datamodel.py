"""The data model shared by every tool: detections and masks for one frame, validated on construction.

Conventions: boxes are (x0, y0, x1, y1) in pixels of the frame they were found in; masks are bool arrays of shape
(H, W) at that frame's resolution; `frame_index` is the position of the frame in the clip's sampled frames (0-based).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tools.rle import decode_rle, encode_rle


@dataclass(frozen=True)
class Detections:
    """Boxes found in one frame.

    boxes: float32 (N, 4) xyxy pixels; scores: float32 (N,) in [0, 1]; phrases: the requested phrase each box
    answers (length N).
    """

    frame_index: int
    boxes: np.ndarray
    scores: np.ndarray
    phrases: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "phrases", tuple(self.phrases))
        if not (len(boxes) == len(scores) == len(self.phrases)):
            raise ValueError(
                f"detections disagree in length: {len(boxes)} boxes, {len(scores)} scores, {len(self.phrases)} phrases"
            )
        if len(boxes) and (np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1])):
            raise ValueError("boxes must be xyxy with x1 >= x0 and y1 >= y0")
        if not np.all(np.isfinite(boxes)) or not np.all(np.isfinite(scores)):
            raise ValueError("boxes and scores must be finite")

    @classmethod
    def empty(cls, frame_index: int) -> Detections:
        return cls(frame_index, np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), ())

    def __len__(self) -> int:
        return len(self.phrases)

    def filter(self, keep: np.ndarray) -> Detections:
        """Detections at the positions where the bool array `keep` (N,) is True."""
        keep = np.asarray(keep, dtype=bool)
        return Detections(
            self.frame_index,
            self.boxes[keep],
            self.scores[keep],
            tuple(p for p, k in zip(self.phrases, keep, strict=True) if k),
        )

    def to_dict(self) -> dict:
        return {
            "frame_index": self.frame_index,
            "boxes": [[round(float(v), 2) for v in box] for box in self.boxes],
            "scores": [round(float(s), 4) for s in self.scores],
            "phrases": list(self.phrases),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Detections:
        return cls(int(data["frame_index"]), np.array(data["boxes"]), np.array(data["scores"]), data["phrases"])


@dataclass(frozen=True)
class ObjectMask:
    """One segmented object: a bool (H, W) mask, the phrase it answers, its box score and the mask's own score;
    object_id names a tracked object across frames (propagate mode), None when each frame stands alone."""

    mask: np.ndarray
    phrase: str
    box: tuple[float, float, float, float]
    box_score: float
    mask_score: float
    object_id: int | None = None

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask)
        if mask.ndim != 2:
            raise ValueError(f"an object mask must be (H, W), got shape {mask.shape}")
        object.__setattr__(self, "mask", mask.astype(bool, copy=False))

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass(frozen=True)
class FrameMasks:
    """All objects segmented in one frame of size (height, width)."""

    frame_index: int
    height: int
    width: int
    objects: tuple[ObjectMask, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        for obj in self.objects:
            if obj.mask.shape != (self.height, self.width):
                raise ValueError(f"object mask {obj.mask.shape} does not match frame size {(self.height, self.width)}")

    @cached_property
    def _union(self) -> np.ndarray:
        out = np.zeros((self.height, self.width), dtype=bool)
        for obj in self.objects:
            out |= obj.mask
        out.flags.writeable = False  # shared by every caller: read-only
        return out

    def union(self) -> np.ndarray:
        """The frame's answer: bool (H, W), True where any sounding object is (computed once, read-only)."""
        return self._union

    def to_dict(self) -> dict:
        """JSON-ready summary with each object's mask as COCO RLE."""
        return {
            "frame_index": self.frame_index,
            "height": self.height,
            "width": self.width,
            "union_area": int(self.union().sum()),
            "objects": [
                {
                    "phrase": obj.phrase,
                    "box": [round(float(v), 2) for v in obj.box],
                    "box_score": round(float(obj.box_score), 4),
                    "mask_score": round(float(obj.mask_score), 4),
                    "area": obj.area,
                    "rle": encode_rle(obj.mask),
                    **({} if obj.object_id is None else {"object_id": obj.object_id}),
                }
                for obj in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> FrameMasks:
        objects = tuple(
            ObjectMask(
                decode_rle(o["rle"]),
                o["phrase"],
                tuple(o["box"]),
                o["box_score"],
                o["mask_score"],
                o.get("object_id"),
            )
            for o in data["objects"]
        )
        return cls(int(data["frame_index"]), int(data["height"]), int(data["width"]), objects)
