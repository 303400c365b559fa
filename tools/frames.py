"""Frame handles: sampled frames are decoded once into the run folder and referred to by path afterwards."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from tools.errors import InputError
from tools.media import decode_frames
from tools.parallel import for_each_in_threads


class FrameRef(BaseModel):
    """One sampled frame: its position k (0-based), the time it was sampled at (s from the clip's start; its audio
    window is cut there), PNG path and original size (px). `pts_s` is the presentation time (s) of the video frame
    on screen at that time (the first frame for a time before it); None for frames given as image files.

    The sampled time, not the frame's own, anchors the audio so that the audio stages can start before any frame is
    decoded (graphs/pipeline.py runs them side by side). For the AVSBench rule both are the same time: it samples
    frame starts."""

    model_config = ConfigDict(frozen=True)

    index: int
    timestamp_s: float
    path: str
    width: int
    height: int
    pts_s: float | None = None


WORK_PNG_LEVEL = 1
"""zlib level of the run folder's working PNGs (frames, critic overlays): at 1280x720 level 1 encodes in 34 ms
against 112 ms for PIL's default 6, for files 16% larger; decoding costs the same (18 ms)."""

FRAME_CACHE_BYTES = 64 * 2**20
"""Decoded frames kept in memory (least recently used first out). Short clips (a 10-frame 1280x720 clip is 28 MB)
are then decoded from PNG once per run however many stages read them; long clips stream from disk, so memory stays
flat whatever the clip's length."""


class FrameCache:
    """Decoded RGB frames by file (path, mtime, size), bounded by bytes; thread-safe (the web app serves threads)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int], Image.Image] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @staticmethod
    def _key(path: str | Path) -> tuple[str, int, int]:
        stat = os.stat(path)
        return str(path), stat.st_mtime_ns, stat.st_size

    def get(self, path: str | Path) -> Image.Image | None:
        key = self._key(path)
        with self._lock:
            image = self._items.get(key)
            if image is not None:
                self._items.move_to_end(key)
        return image

    def put(self, path: str | Path, image: Image.Image) -> None:
        size = image.width * image.height * len(image.getbands())
        if size > self.max_bytes:
            return
        key = self._key(path)
        with self._lock:
            old = self._items.pop(key, None)
            self._bytes -= 0 if old is None else old.width * old.height * len(old.getbands())
            self._items[key] = image
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.width * evicted.height * len(evicted.getbands())


FRAMES = FrameCache(FRAME_CACHE_BYTES)


def save_work_png(image: Image.Image, path: str | Path) -> None:
    """Write a working PNG (fast zlib level) and keep the RGB image in the frame cache."""
    image.save(path, format="PNG", compress_level=WORK_PNG_LEVEL)
    FRAMES.put(path, image)


def extract_frames(clip_path: str | Path, timestamps_s: Sequence[float], out_dir: Path) -> list[FrameRef]:
    """Decode the frames at `timestamps_s` one at a time and save each as `out_dir/<k>.png` (lossless).

    PNG encoding (which releases the GIL) runs on a few threads while the next frames decode; at most two frames per
    thread wait to be written, so memory does not grow with the number of frames."""
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = []

    def saves() -> Iterator[tuple[Image.Image, Path]]:
        for decoded in decode_frames(clip_path, timestamps_s):
            path = out_dir / f"{decoded.index:05d}.png"
            width, height = decoded.image.size
            refs.append(
                FrameRef(
                    index=decoded.index,
                    timestamp_s=decoded.requested_s,
                    path=str(path),
                    width=width,
                    height=height,
                    pts_s=decoded.pts_s,
                )
            )
            yield decoded.image, path

    for_each_in_threads(save_work_png, saves())
    return refs


def frame_refs_from_files(paths: Sequence[str | Path], timestamps_s: Sequence[float]) -> list[FrameRef]:
    """Handles for frames that already exist as image files (e.g. AVSBench's extracted frames)."""
    refs = []
    for index, (path, timestamp) in enumerate(zip(paths, timestamps_s, strict=True)):
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, SyntaxError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
            raise InputError(f"{path}: unreadable frame image ({err})") from None
        refs.append(FrameRef(index=index, timestamp_s=timestamp, path=str(path), width=width, height=height))
    return refs


def load_frame(ref: FrameRef, max_side: int | None = None) -> tuple[Image.Image, float]:
    """The frame as RGB, downscaled so its longer side is at most `max_side`; returns (image, scale) where
    scale = model pixels per original pixel (1.0 when not downscaled)."""
    image = read_rgb(ref.path)
    longer = max(image.size)
    if max_side is None or longer <= max_side:
        return image, 1.0
    scale = max_side / longer
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), scale


def read_rgb(path: str | Path) -> Image.Image:
    """The image file as RGB, from the frame cache when it holds it. Callers must not modify the image in place."""
    image = FRAMES.get(path)
    if image is None:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        FRAMES.put(path, image)
    return image
