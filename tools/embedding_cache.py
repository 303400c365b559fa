"""Image embeddings computed once per frame: a bounded LRU cache and a Segmenter wrapper that uses it.

SAM2's image encoder is ~98% of a frame's segmentation cost (CPU, hiera-tiny at 1024 px: ~3 s encoder, ~0.06 s mask
decoder), and the agent's refine rounds and critic checks prompt the SAME frames with new boxes. `CachingSegmenter`
runs the encoder once per frame and the mask decoder per box set; masks are bit-identical to the uncached path
because the decoder sees the very same embedding tensors.

Keys: (segmenter id, frame file path, file mtime in ns, file size in bytes, image size given to the model (w, h),
the model's own input size). A frame file rewritten in place (e.g. `sample_frames` re-decoding work/frames) changes
mtime/size and so misses. Callers holding only an image (no file) are keyed by a digest of its pixels instead.

Wire it in with `with_embedding_cache(segmenter, capacity)`, e.g.
`registry.install(spec, with_embedding_cache(registry.get(spec), 16))`. `with_detection_cache(grounder, capacity)`
turns on the matching cache of GroundingDINO's raw outputs (tools/models/grounding_dino.py `output_cache`), so that
refine rounds which change only thresholds cost post-processing only.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np
from PIL import Image

from tools.frames import FrameRef
from tools.models.base import ModelSpec, Segmenter

DEFAULT_CAPACITY = 16
"""Frames kept in memory. A SAM2 embedding is ~16 MB at 1024 px (float32: 32x256x256 + 64x128x128 + 256x64x64), so
16 entries bound the cache at ~256 MB; clips with more sampled frames than this recompute in later rounds."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class CacheStats:
    """Counters of one cache: lookups that found an entry, lookups that did not, entries dropped for room."""

    hits: int
    misses: int
    evictions: int
    entries: int
    capacity: int


class LRUCache(Generic[K, V]):
    """At most `capacity` entries; a lookup refreshes its entry, an insert past capacity drops the least recent.

    Thread-safe: the registry's adapters are shared by worker threads. Two threads missing the same key may both
    compute the value; the second insert wins (values for one key are interchangeable by construction).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"cache capacity must be >= 1 entry, got {capacity}")
        self.capacity = int(capacity)
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
                self.evictions += 1

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def values(self) -> list[V]:
        """The entries' values now, least recently used first (a snapshot; lookups are not counted)."""
        with self._lock:
            return list(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    @property
    def stats(self) -> CacheStats:
        return CacheStats(self.hits, self.misses, self.evictions, len(self._entries), self.capacity)


class EmbeddingCache(LRUCache[tuple, Any]):
    """LRU of image embeddings keyed by `embedding_key` tuples (see the module docstring)."""


@runtime_checkable
class EmbeddingSegmenter(Segmenter, Protocol):
    """A Segmenter whose image encoder can run on its own (tools.models.sam2.Sam2Segmenter)."""

    def embed(self, image: Image.Image) -> Any:
        """The image's encoder output, reusable for any number of box prompts."""
        ...

    def segment_with_embedding(self, embedding: Any, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """boxes: float32 (N, 4) xyxy px of the embedded image -> bool masks (N, H, W), float32 scores (N,)."""
        ...


def image_digest(image: Image.Image) -> str:
    """blake2b of an image's mode, size and pixels (~3 ms for a 1280x720 RGB frame)."""
    digest = hashlib.blake2b(f"{image.mode}{image.size}".encode(), digest_size=16)
    digest.update(image.tobytes())
    return digest.hexdigest()


def model_input_size(model: Any) -> tuple | None:
    """The processor's resize target (e.g. (("height", 1024), ("width", 1024))), or None when it has none:
    a processor resized at run time must not reuse embeddings made at another size."""
    size = getattr(getattr(getattr(model, "processor", None), "image_processor", None), "size", None)
    if size is None:
        return None
    return tuple(sorted(dict(size).items()))


def file_identity(path: str | os.PathLike) -> tuple[str, int, int]:
    """(absolute path, mtime in ns, size in bytes) of a frame file."""
    stat = os.stat(path)
    return os.path.abspath(path), stat.st_mtime_ns, stat.st_size


class CachingSegmenter:
    """Segmenter that runs `inner.embed` once per frame (while cached) and `inner.segment_with_embedding` per
    box set. Satisfies the Segmenter protocol; other attributes (model, processor, stats) read through to `inner`.

    `segment_frames(refs, images, boxes)` keys by the frame files (tools.segmentation uses it when present);
    `segment(image, boxes)` keys by a pixel digest.
    """

    def __init__(self, inner: EmbeddingSegmenter, cache: EmbeddingCache | None = None) -> None:
        self.inner = inner
        self.spec: ModelSpec = inner.spec
        self.cache = cache if cache is not None else EmbeddingCache()

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes this wrapper lacks: model, processor, stats, last_object_scores, ...
        if name == "inner":  # not set yet (unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def cache_stats(self) -> CacheStats:
        return self.cache.stats

    def _key(self, source: tuple, image: Image.Image) -> tuple:
        return (id(self.inner), self.spec.model_id, *source, image.size, model_input_size(self.inner))

    def _embeddings(self, keys: Sequence[tuple], images: Sequence[Image.Image]) -> list[Any]:
        """One embedding per key: from the cache (one lookup each) or, where missing, from encoder passes of up to
        `embed_batch_size` images when the inner segmenter batches (`embed_batch`), else one image at a time."""
        found = [self.cache.get(key) for key in keys]
        missing = [k for k, embedding in enumerate(found) if embedding is None]
        batched = getattr(self.inner, "embed_batch", None)
        size = max(1, getattr(self.inner, "embed_batch_size", 1)) if batched else 1
        for lo in range(0, len(missing), size):
            chunk = missing[lo : lo + size]
            fresh = batched([images[k] for k in chunk]) if batched else [self.inner.embed(images[chunk[0]])]
            for k, embedding in zip(chunk, fresh, strict=True):
                found[k] = embedding
                self.cache.put(keys[k], embedding)
        return found

    def _segment(
        self, sources: Sequence[tuple], images: Sequence[Image.Image], boxes: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        arrays = [np.asarray(b, dtype=np.float32) for b in boxes]
        prompted = [k for k, arr in enumerate(arrays) if arr.size]
        keys = [self._key(sources[k], images[k]) for k in prompted]
        embeddings = dict(zip(prompted, self._embeddings(keys, [images[k] for k in prompted]), strict=True))
        # No boxes: the inner segmenter's own empty answer, without running (or caching) the encoder.
        return [
            self.inner.segment_with_embedding(embeddings[k], arr)
            if k in embeddings
            else self.inner.segment(images[k], arr.reshape(0, 4))
            for k, arr in enumerate(arrays)
        ]

    def segment(self, image: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """boxes: float32 (N, 4) xyxy px of `image`; returns bool masks (N, H, W) and float32 scores (N,)."""
        return self._segment([("pixels", image_digest(image))], [image], [boxes])[0]

    def segment_frames(
        self, refs: Sequence[FrameRef], images: Sequence[Image.Image], boxes: Sequence[np.ndarray]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`segment` for each of `images`, loaded from `refs[k].path` (possibly downscaled): keyed by the file, no
        hashing. Frames not cached are encoded `embed_batch_size` at a time."""
        return self._segment([("file", *file_identity(ref.path)) for ref in refs], images, boxes)


def with_embedding_cache(segmenter: Segmenter, capacity: int = DEFAULT_CAPACITY) -> Segmenter:
    """`segmenter` wrapped in a CachingSegmenter holding up to `capacity` frames' embeddings.

    Segmenters without a separable encoder (scripted fakes) come back unchanged; an already wrapped one comes
    back as is (no second cache in front of the first).
    """
    if isinstance(segmenter, CachingSegmenter):
        return segmenter
    separable = all(callable(getattr(segmenter, name, None)) for name in ("embed", "segment_with_embedding"))
    if not separable:
        return segmenter
    return CachingSegmenter(segmenter, EmbeddingCache(capacity))  # type: ignore[arg-type]


DEFAULT_DETECTION_CAPACITY = 1024
"""Raw GroundingDINO outputs kept: ~36 KB each (900 queries x ~10 caption tokens float32 + boxes), ~40 MB in all."""


def with_detection_cache(grounder: Any, capacity: int = DEFAULT_DETECTION_CAPACITY) -> Any:
    """Give `grounder` an LRU of raw outputs per (image pixels, caption, input size) when it supports one
    (GroundingDinoGrounder.output_cache); returns the same object. Others (scripted fakes) are left alone; a grounder
    that already has a cache keeps it."""
    target = grounder
    # Wrappers (bench meters, ...) read attributes through to `inner`: the cache belongs on the model's adapter.
    while "output_cache" not in getattr(target, "__dict__", {}) and hasattr(target, "inner"):
        target = target.inner
    if "output_cache" in getattr(target, "__dict__", {}) and target.output_cache is None:
        target.output_cache = LRUCache(capacity)
    return grounder
