"""Frame handles: sampled frames are decoded once into the run folder and referred to by path afterwards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from pydantic import BaseModel, ConfigDict

from tools.media import decode_frames


class FrameRef(BaseModel):
    """One sampled frame: its position k (0-based), time in the clip (s), PNG path and original size (px)."""

    model_config = ConfigDict(frozen=True)

    index: int
    timestamp_s: float
    path: str
    width: int
    height: int


def extract_frames(clip_path: str | Path, timestamps_s: Sequence[float], out_dir: Path) -> list[FrameRef]:
    """Decode the frames at `timestamps_s` one at a time and save each as `out_dir/<k>.png` (lossless)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    refs = []
    for decoded in decode_frames(clip_path, timestamps_s):
        path = out_dir / f"{decoded.index:05d}.png"
        decoded.image.save(path)
        width, height = decoded.image.size
        refs.append(
            FrameRef(index=decoded.index, timestamp_s=decoded.pts_s, path=str(path), width=width, height=height)
        )
    return refs


def frame_refs_from_files(paths: Sequence[str | Path], timestamps_s: Sequence[float]) -> list[FrameRef]:
    """Handles for frames that already exist as image files (e.g. AVSBench's extracted frames)."""
    refs = []
    for index, (path, timestamp) in enumerate(zip(paths, timestamps_s, strict=True)):
        with Image.open(path) as image:
            width, height = image.size
        refs.append(FrameRef(index=index, timestamp_s=timestamp, path=str(path), width=width, height=height))
    return refs


def load_frame(ref: FrameRef, max_side: int | None = None) -> tuple[Image.Image, float]:
    """The frame as RGB, downscaled so its longer side is at most `max_side`; returns (image, scale) where
    scale = model pixels per original pixel (1.0 when not downscaled)."""
    with Image.open(ref.path) as image:
        image = image.convert("RGB")
    longer = max(image.size)
    if max_side is None or longer <= max_side:
        return image, 1.0
    scale = max_side / longer
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR), scale
