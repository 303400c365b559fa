"""Writes examples/metronome.mp4: a drawn metronome whose pendulum swings and clicks once per second.

A small clip made from scratch (no third-party content) so the quick start runs anywhere; real AVSBench clips
are what to try next. Run: `uv run python examples/make_metronome.py`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

SECONDS = 5
FPS = 25
SIZE = (320, 240)
SAMPLE_RATE = 44100


def draw_frame(t: float) -> Image.Image:
    """The metronome at time t (s): a wooden body and a pendulum swinging with a 2 s period."""
    image = Image.new("RGB", SIZE, (228, 222, 206))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 190, SIZE[0], SIZE[1]), fill=(150, 120, 90))
    draw.polygon([(120, 200), (200, 200), (175, 40), (145, 40)], fill=(120, 60, 30), outline=(60, 30, 10))
    angle = 0.45 * math.sin(math.pi * t)
    pivot = (160, 180)
    tip = (pivot[0] + 120 * math.sin(angle), pivot[1] - 120 * math.cos(angle))
    draw.line([pivot, tip], fill=(220, 220, 220), width=4)
    weight = (pivot[0] + 80 * math.sin(angle), pivot[1] - 80 * math.cos(angle))
    draw.ellipse((weight[0] - 9, weight[1] - 7, weight[0] + 9, weight[1] + 7), fill=(200, 170, 40))
    return image


def clicks() -> np.ndarray:
    """Mono float32 audio: a short damped 1.5 kHz click at every whole second (the pendulum's extremes)."""
    audio = np.zeros(SECONDS * SAMPLE_RATE, np.float32)
    click_t = np.arange(int(0.03 * SAMPLE_RATE)) / SAMPLE_RATE
    click = (0.8 * np.sin(2 * math.pi * 1500 * click_t) * np.exp(-click_t * 150)).astype(np.float32)
    for second in range(SECONDS):
        start = int((second + 0.5) * SAMPLE_RATE)
        audio[start : start + len(click)] += click
    return audio


OUT = Path(__file__).with_name("metronome.mp4")


def main(out: Path = OUT) -> None:
    with av.open(str(out), "w") as container:
        video = container.add_stream("libx264", rate=FPS, options={"crf": "28"})
        video.width, video.height, video.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        audio_stream = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for n in range(SECONDS * FPS):
            frame = av.VideoFrame.from_image(draw_frame(n / FPS))
            container.mux(video.encode(frame))
        container.mux(video.encode())
        samples = clicks()
        chunk = 1024
        for pts in range(0, len(samples), chunk):
            frame = av.AudioFrame.from_ndarray(samples[None, pts : pts + chunk], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, pts, Fraction(1, SAMPLE_RATE)
            container.mux(audio_stream.encode(frame))
        container.mux(audio_stream.encode())


if __name__ == "__main__":
    main()
