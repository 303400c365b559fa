"""The data model shared by every tool: detections and masks for one frame, validated on construction.

Conventions: boxes are (x0, y0, x1, y1) in pixels of the frame they were found in; masks are bool arrays of shape
(H, W) at that frame's resolution; `frame_index` is the position of the frame in the clip's sampled frames (0-based).
Text counts frames from 1 (`frame_number`), for people and models alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from tools.rle import RLE, decode_rle, encode_rle, rle_area, rle_union_area

FIRST_FRAME_NUMBER = 1
"""What every message, file name and page numbers the first frame: AVSBench's mask files are <video>_1.png, ...
Data fields (index, frame_index, a verdict's frames) keep 0-based indices."""


def frame_number(frame_index: int) -> int:
    """The frame as every message counts it (findings, advice, tool results, prompts, file names, pages)."""
    return frame_index + FIRST_FRAME_NUMBER


def frame_index_of(number: int, first: int = FIRST_FRAME_NUMBER) -> int:
    """The 0-based index of the frame a message numbers `number`, counting from `first` (0 in traces written before
    messages counted from 1)."""
    return number - first


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


class ObjectMask:
    """One segmented object: its pixels, the phrase it answers, its box score and the mask's own score; object_id
    names a tracked object across frames (propagate mode), None when each frame stands alone.

    The pixels are held as a bool (H, W) array (`ObjectMask(mask, ...)`) or as COCO RLE (`ObjectMask.from_rle`,
    what masks files and tracks keep); each form is made from the other at most once, when first read (`mask`,
    `rle`). `shape` and, for an RLE-held object, `area` never decode, so the checks over a clip's masks read no
    pixels. Read-only once built.
    """

    __slots__ = ("_area", "_mask", "_rle", "box", "box_score", "mask_score", "object_id", "phrase")

    phrase: str
    box: tuple[float, float, float, float]
    box_score: float
    mask_score: float
    object_id: int | None

    def __init__(
        self,
        mask: np.ndarray,
        phrase: str,
        box: tuple[float, float, float, float],
        box_score: float,
        mask_score: float,
        object_id: int | None = None,
    ) -> None:
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"an object mask must be (H, W), got shape {mask.shape}")
        self._set(mask.astype(bool, copy=False), None, phrase, box, box_score, mask_score, object_id)

    @classmethod
    def from_rle(
        cls,
        rle: RLE,
        phrase: str,
        box: tuple[float, float, float, float],
        box_score: float,
        mask_score: float,
        object_id: int | None = None,
        area: int | None = None,
    ) -> ObjectMask:
        """An object whose mask is the COCO RLE `rle`, decoded only if `mask` is read; `area`, when known (a
        to_dict() of it recorded it), is trusted as the mask's pixel count."""
        if len(rle["size"]) != 2:
            raise ValueError(f"an object mask must be (H, W), got RLE size {rle['size']}")
        obj = cls.__new__(cls)
        obj._set(None, rle, phrase, box, box_score, mask_score, object_id)
        if area is not None:
            object.__setattr__(obj, "_area", int(area))
        return obj

    def _set(
        self,
        mask: np.ndarray | None,
        rle: RLE | None,
        phrase: str,
        box: tuple[float, float, float, float],
        box_score: float,
        mask_score: float,
        object_id: int | None,
    ) -> None:
        for name, value in (
            ("_mask", mask),
            ("_rle", rle),
            ("_area", None),
            ("phrase", phrase),
            ("box", tuple(box)),
            ("box_score", box_score),
            ("mask_score", mask_score),
            ("object_id", object_id),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ObjectMask is read-only: cannot set {name}")

    def __repr__(self) -> str:
        return (
            f"ObjectMask(phrase={self.phrase!r}, box={self.box}, box_score={self.box_score}, "
            f"mask_score={self.mask_score}, object_id={self.object_id}, shape={self.shape})"
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the mask."""
        if self._mask is not None:
            return self._mask.shape
        height, width = self._rle["size"]
        return (int(height), int(width))

    @property
    def mask(self) -> np.ndarray:
        """The bool (H, W) mask (decoded from the RLE on first read, then kept)."""
        if self._mask is None:
            object.__setattr__(self, "_mask", decode_rle(self._rle))
        return self._mask

    @property
    def rle(self) -> RLE:
        """The mask as COCO RLE (encoded on first read, then kept)."""
        if self._rle is None:
            object.__setattr__(self, "_rle", encode_rle(self._mask))
        return self._rle

    @property
    def holds_rle(self) -> bool:
        """Whether the RLE form exists already (reading `rle` costs nothing)."""
        return self._rle is not None

    @property
    def area(self) -> int:
        """Pixels in the mask (counted from the RLE when the object holds one)."""
        if self._area is None:
            area = rle_area(self._rle) if self._rle is not None else int(self._mask.sum())
            object.__setattr__(self, "_area", area)
        return self._area

    def with_object_id(self, object_id: int | None) -> ObjectMask:
        """This object named `object_id`, sharing its pixels."""
        other = ObjectMask.__new__(ObjectMask)
        other._set(self._mask, self._rle, self.phrase, self.box, self.box_score, self.mask_score, object_id)
        return other


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
            if obj.shape != (self.height, self.width):
                raise ValueError(f"object mask {obj.shape} does not match frame size {(self.height, self.width)}")

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

    @cached_property
    def union_area(self) -> int:
        """Pixels in the frame's answer; merged from the objects' RLE when they all hold one (nothing decodes)."""
        if "_union" not in self.__dict__ and all(obj.holds_rle for obj in self.objects):
            return _union_area(self.objects)
        return int(np.count_nonzero(self.union()))

    @cached_property
    def phrase_areas(self) -> dict[str, int]:
        """Pixels covered by each phrase's objects (their union), for the phrases that have objects."""
        by_phrase: dict[str, list[ObjectMask]] = {}
        for obj in self.objects:
            by_phrase.setdefault(obj.phrase, []).append(obj)
        if len(by_phrase) == 1:
            return {phrase: self.union_area for phrase in by_phrase}
        return {phrase: _union_area(objects) for phrase, objects in by_phrase.items()}

    def to_dict(self) -> dict:
        """JSON-ready summary with each object's mask as COCO RLE."""
        return {
            "frame_index": self.frame_index,
            "height": self.height,
            "width": self.width,
            "union_area": self.union_area,
            "objects": [
                {
                    "phrase": obj.phrase,
                    "box": [round(float(v), 2) for v in obj.box],
                    "box_score": round(float(obj.box_score), 4),
                    "mask_score": round(float(obj.mask_score), 4),
                    "area": obj.area,
                    "rle": obj.rle,
                    **({} if obj.object_id is None else {"object_id": obj.object_id}),
                }
                for obj in self.objects
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> FrameMasks:
        """The frame a to_dict() dict describes; object masks stay RLE until read, and the areas it records are
        taken as they are (the checks then count nothing)."""
        objects = tuple(
            ObjectMask.from_rle(
                o["rle"],
                o["phrase"],
                tuple(o["box"]),
                o["box_score"],
                o["mask_score"],
                o.get("object_id"),
                o.get("area"),
            )
            for o in data["objects"]
        )
        frame = cls(int(data["frame_index"]), int(data["height"]), int(data["width"]), objects)
        if "union_area" in data:
            frame.__dict__["union_area"] = int(data["union_area"])  # fills the cached_property
        return frame


def _union_area(objects: Sequence[ObjectMask]) -> int:
    """Pixels in the union of `objects` (one size): from their RLE when they all hold one, else from pixels."""
    if len(objects) == 1:
        return objects[0].area
    if all(obj.holds_rle for obj in objects):
        return rle_union_area([obj.rle for obj in objects])
    return int(np.count_nonzero(np.logical_or.reduce([obj.mask for obj in objects])))
