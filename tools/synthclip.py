"""Synthetic clips for benchmarks and smoke runs: an H.264 mp4 with moving shapes and an AAC tone, via PyAV.

The pictures are not meant to be recognised (the benchmark's models have random weights); they only need to be
real, decodable video of a chosen length, rate and size, with non-trivial content so encoders and decoders work
as they do on camera footage.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_AAC_FRAME = 1024  # samples per AAC frame


def synthetic_frame(n: int, width: int, height: int) -> np.ndarray:
    """uint8 (height, width, 3) RGB: a vertical gradient with a disc and a square moving over it at frame n."""
    y = np.linspace(40, 200, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 60, width, dtype=np.float32)[None, :]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = (y * 0.6 + x).astype(np.uint8)
    img[..., 1] = (y * 0.8).astype(np.uint8)
    img[..., 2] = (255 - y).astype(np.uint8)
    r = max(2, min(width, height) // 8)
    cx = int((0.2 + 0.6 * ((n * 0.013) % 1.0)) * width)
    cy = height // 2
    yy, xx = np.ogrid[:height, :width]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (220, 60, 40)
    sx = int((0.7 - 0.5 * ((n * 0.007) % 1.0)) * width)
    sy = height // 5
    img[sy : sy + r, max(0, sx - r // 2) : sx + r // 2] = (30, 200, 90)
    return img


def write_synthetic_clip(
    path: str | Path,
    *,
    seconds: float,
    fps: float = 25.0,
    size: tuple[int, int] = (640, 360),
    sample_rate: int = 16000,
    tone_hz: float = 440.0,
    gop: int = 25,
) -> Path:
    """Write `seconds` of video at `fps` and `size` = (width, height) px (even numbers) with a mono AAC sine tone
    at `sample_rate` Hz; a keyframe every `gop` frames. Frames are generated one at a time (flat memory)."""
    path = Path(path)
    width, height = size
    n_frames = max(1, round(seconds * fps))
    rate = Fraction(fps).limit_denominator(1001)
    options = {"crf": "23", "preset": "veryfast", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
    with av.open(str(path), mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=rate, options=options)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=sample_rate, layout="mono")
        audio.time_base = Fraction(1, sample_rate)
        for n in range(n_frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(n, width, height), format="rgb24")
            frame.pts = n
            frame.time_base = 1 / rate
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        total = round(seconds * sample_rate)
        for start in range(0, total, _AAC_FRAME):
            t = np.arange(start, min(total, start + _AAC_FRAME), dtype=np.float64) / sample_rate
            chunk = (0.4 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)[None, :]
            samples = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            samples.sample_rate = sample_rate
            samples.pts = start
            samples.time_base = Fraction(1, sample_rate)
            container.mux(audio.encode(samples))
        container.mux(audio.encode(None))
    return path
