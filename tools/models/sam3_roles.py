"""SAM 3 in the grounder and segmenter roles, so the graphs run it with no special case.

SAM 3 turns a text prompt straight into instance masks. As a Grounder it answers `detect` with the instances'
boxes and scores and keeps their masks; as a Segmenter it answers `segment` for those boxes with the kept masks.
Both roles share one model and one mask store per (model id, face, device, dtype), so the model is loaded once
and every frame is encoded once. The segmenter only knows boxes its grounder found on the same picture: a box
from anywhere else is an error, not a guess.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cache

import numpy as np
from PIL import Image

from tools.datamodel import Detections
from tools.embedding_cache import image_digest
from tools.models.base import ModelSpec
from tools.models.sam3 import Sam3TextSegmenter, TextInstance, load_sam3

MASK_THRESHOLD = 0.5
STORE_CAPACITY = 256
"""Pictures whose instances are kept (a refine round re-segments the same frames)."""
MIN_BOX_IOU = 0.9
"""A box given to the segmenter must overlap a found instance's box this much (boxes are rescaled in float)."""


class InstanceStore:
    """The instances SAM 3 found per picture, least recently used dropped first; thread-safe."""

    def __init__(self, capacity: int = STORE_CAPACITY) -> None:
        self._items: OrderedDict[str, list[TextInstance]] = OrderedDict()
        self._capacity = capacity
        self._lock = threading.Lock()

    def add(self, key: str, instances: list[TextInstance]) -> None:
        """Add a detect call's instances to the picture's (one-at-a-time grounding calls detect per phrase)."""
        with self._lock:
            known = self._items.get(key, [])
            seen = {(i.phrase, i.box) for i in known}
            self._items[key] = known + [i for i in instances if (i.phrase, i.box) not in seen]
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)

    def get(self, key: str) -> list[TextInstance] | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box (4,) with each of boxes (M, 4)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


class Sam3Grounder:
    """Grounder protocol over SAM 3: one text prompt per phrase; `box_threshold` is SAM 3's detection threshold."""

    def __init__(self, spec: ModelSpec, model: Sam3TextSegmenter, store: InstanceStore) -> None:
        self.spec = spec
        self.model = model
        self.store = store

    def detect(
        self,
        images: Sequence[Image.Image],
        phrases: Sequence[Sequence[str]],
        frame_indices: Sequence[int],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]:
        """One Detections per image; text_threshold has no meaning for SAM 3 and is ignored."""
        out = []
        for image, frame_phrases, index in zip(images, phrases, frame_indices, strict=True):
            if not frame_phrases:
                out.append(Detections.empty(index))
                continue
            instances = self.model.segment_text(image, frame_phrases, box_threshold, MASK_THRESHOLD)
            self.store.add(image_digest(image), instances)
            boxes = np.array([i.box for i in instances], np.float32).reshape(-1, 4)
            out.append(Detections(index, boxes, [i.score for i in instances], [i.phrase for i in instances]))
        return out


class Sam3Segmenter:
    """Segmenter protocol over SAM 3: the masks its grounder already found for these boxes on this picture."""

    def __init__(self, spec: ModelSpec, store: InstanceStore) -> None:
        self.spec = spec
        self.store = store

    def segment(self, image: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, image.height, image.width), bool), np.zeros((0,), np.float32)
        # By content: the grounder and the segmenter receive separately loaded copies of a picture.
        instances = self.store.get(image_digest(image))
        if not instances:
            raise ValueError("SAM 3 segments only boxes its own grounding found on this picture; ground first")
        found = np.array([i.box for i in instances], np.float32)
        used = np.zeros(len(instances), bool)
        masks, scores = [], []
        for box in boxes:
            # Boxes arrive in detection order and each instance answers one box, so the first unused instance
            # with this box is the one (two phrases, or two instances, can share nearly the same box).
            matches = np.flatnonzero(~used & (_box_iou(box, found) >= MIN_BOX_IOU))
            if len(matches) == 0:
                raise ValueError(f"box {box.round(1).tolist()} was not found by SAM 3 on this picture")
            best = int(matches[0])
            used[best] = True
            masks.append(instances[best].mask)
            scores.append(instances[best].score)
        return np.stack(masks), np.array(scores, np.float32)


@cache
def _shared(spec: ModelSpec, device: str) -> tuple[Sam3TextSegmenter, InstanceStore]:
    """One SAM 3 model and one instance store per model spec and device, for both roles."""
    return load_sam3(spec.model_copy(update={"role": "text_segmenter"}), device), InstanceStore()


def _model_spec(spec: ModelSpec) -> ModelSpec:
    return spec.model_copy(update={"role": "text_segmenter", "family": "sam3"})


def load_sam3_grounder(spec: ModelSpec, device: str) -> Sam3Grounder:
    model, store = _shared(_model_spec(spec), device)
    return Sam3Grounder(spec, model, store)


def load_sam3_segmenter(spec: ModelSpec, device: str) -> Sam3Segmenter:
    _, store = _shared(_model_spec(spec), device)
    return Sam3Segmenter(spec, store)
