"""Which frames of a clip to look at (AVSBench rule, uniform, fixed rate) and the audio window of each."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tools.errors import InputError
from tools.media import ClipInfo

__all__ = ["FrameStrategy", "audio_windows", "parse_frame_strategy", "select_timestamps"]

StrategyKind = Literal["avsbench", "uniform", "fps"]
_ACCEPTED = "'avsbench', 'uniform:N' (N >= 1 frames) or 'fps:F' (F > 0 frames per second)"


@dataclass(frozen=True)
class FrameStrategy:
    """How to choose frame timestamps. ``count`` is set for "uniform" (frames), ``rate`` for "fps" (Hz)."""

    kind: StrategyKind
    count: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.kind == "avsbench":
            ok = self.count is None and self.rate is None
        elif self.kind == "uniform":
            ok = isinstance(self.count, int) and self.count >= 1 and self.rate is None
        elif self.kind == "fps":
            ok = self.rate is not None and math.isfinite(self.rate) and self.rate > 0 and self.count is None
        else:
            ok = False
        if not ok:
            raise ValueError(f"invalid frame strategy {self!r}; accepted: {_ACCEPTED}")

    def __str__(self) -> str:
        if self.kind == "uniform":
            return f"uniform:{self.count}"
        if self.kind == "fps":
            return f"fps:{self.rate:g}"
        return "avsbench"


def parse_frame_strategy(text: str) -> FrameStrategy:
    """Parse "avsbench", "uniform:N" (integer N >= 1) or "fps:F" (number F > 0); InputError otherwise."""
    raw = str(text).strip().lower()
    kind, sep, arg = raw.partition(":")
    try:
        if kind == "avsbench" and not sep:
            return FrameStrategy("avsbench")
        if kind == "uniform" and sep:
            return FrameStrategy("uniform", count=int(arg))
        if kind == "fps" and sep:
            return FrameStrategy("fps", rate=float(arg))
    except ValueError:
        pass
    raise InputError(f"unknown frame strategy {text!r}; use {_ACCEPTED}")


def _avsbench(info: ClipInfo) -> list[float]:
    fps = info.fps
    fi = max(1, round(fps))
    # A clip that misses a whole second by less than one frame still gets that second's frame.
    n_seconds = max(1, math.floor(info.duration_s + 1.0 / fps))
    last = max(0.0, info.duration_s - 1.0 / fps)  # start of the last frame before the end
    times = []
    for s in range(n_seconds):
        index = int(s * fi + 15 / 16 * fi)
        times.append(min(index / fps, last))
    return times


def select_timestamps(info: ClipInfo, strategy: FrameStrategy | str, max_frames: int | None = None) -> list[float]:
    """Frame timestamps in seconds from the video start: sorted, each in [0, duration).

    - avsbench: the official AVSBench rule. For each whole second s of the clip (5 for a 5 s clip; a clip
      short of a whole second by less than one frame still counts it), frame index int(s*fi + 15/16*fi) with
      fi = round(fps), at time index / fps: near the END of each second. A time at or past the end becomes
      the last frame's start, so a clip shorter than 1 s gives exactly one frame, its last.
    - uniform:N: the centres of N equal segments of the clip.
    - fps:F: every 1/F seconds from 0.
    A one-frame clip gives exactly one timestamp (0.0) for every strategy. ``max_frames`` keeps only the
    first ``max_frames`` timestamps (a bound on work, not a resampling: the tail of the clip is dropped).
    """
    if isinstance(strategy, str):
        strategy = parse_frame_strategy(strategy)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    duration = info.duration_s
    if info.n_frames <= 1:
        times = [0.0]
    elif strategy.kind == "avsbench":
        times = _avsbench(info)
    elif strategy.kind == "uniform":
        n = strategy.count or 1
        times = [(k + 0.5) * duration / n for k in range(n)]
    else:
        rate = strategy.rate or 1.0
        n = max(1, math.ceil(duration * rate - 1e-9))
        times = [k / rate for k in range(n)]
    return times[:max_frames] if max_frames is not None else times


def audio_windows(
    samples: np.ndarray,
    sample_rate: int,
    timestamps_s: Sequence[float],
    window_s: float = 1.0,
    anchor: Literal["end", "center", "start"] = "end",
) -> np.ndarray:
    """Cut one audio window per frame: float32 array (n_frames, round(window_s * sample_rate)).

    ``samples`` is mono audio (n,) whose sample 0 is time 0. With anchor "end" (default) a window covers the
    ``window_s`` seconds that END at the frame's timestamp (what was heard up to that frame); "center" centres
    it on the timestamp and "start" begins it there. Parts outside the audio are zeros, so every window has
    the same length; empty audio gives all-zero windows.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"samples must be 1-D mono audio, got shape {x.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    length = round(window_s * sample_rate)
    if length < 1:
        raise ValueError(f"window_s={window_s} is shorter than one sample at {sample_rate} Hz")
    if anchor not in ("end", "center", "start"):
        raise ValueError(f"anchor must be 'end', 'center' or 'start', got {anchor!r}")
    out = np.zeros((len(timestamps_s), length), np.float32)
    for i, t in enumerate(timestamps_s):
        pos = round(float(t) * sample_rate)
        start = {"end": pos - length, "center": pos - length // 2, "start": pos}[anchor]
        lo, hi = max(start, 0), min(start + length, x.shape[0])
        if hi > lo:
            out[i, lo - start : hi - start] = x[lo:hi]
    return out
