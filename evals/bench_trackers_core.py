"""The work of evals.bench_trackers (see its docstring): both SAM2 video trackers built, warmed up and timed on the
same synthetic frames. Imports torch: evals.bench_trackers imports it only once its options have been parsed."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evals.bench_options import write_frames
from tools.frames import FrameRef
from tools.models.base import Face, ModelSpec
from tools.models.registry import ModelRegistry

FAMILIES = ("sam2_video", "sam2_meta")
BOXES = np.array([[0.10, 0.20, 0.45, 0.70], [0.50, 0.30, 0.90, 0.85]], np.float32)
"""The two seed boxes as fractions of the frame (x0, y0, x1, y1)."""


def time_tracker(tracker: Any, frames: list[FrameRef]) -> tuple[float, float, int]:
    """(seconds for one full propagation of the two boxes from the middle frame, peak session MB, frames yielded)."""
    ref = frames[len(frames) // 2]
    boxes = BOXES * [ref.width, ref.height, ref.width, ref.height]
    tracker.stats.peak_session_bytes = 0
    start = time.perf_counter()
    tracked = sum(1 for _ in tracker.propagate(frames, ref.index, boxes, [1, 2]))
    if tracker.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, tracker.stats.peak_session_bytes / 1e6, tracked


def compare_trackers(
    registry: ModelRegistry, model_id: str, frame_count: int, size: tuple[int, int], repeats: int, face: Face
) -> dict[str, Any]:
    """Both FAMILIES of `model_id` built on `registry`, each warmed up, then timed `repeats` times in turn on the same
    `frame_count` frames of `size` (w, h) px, fastest kept; prints one line per tracker and returns the summary
    (evals.bench_trackers' JSON line)."""
    width, height = size
    trackers, build_s = {}, {}
    for family in FAMILIES:
        start = time.perf_counter()
        trackers[family] = registry.get(ModelSpec(role="propagator", family=family, model_id=model_id, face=face))
        build_s[family] = round(time.perf_counter() - start, 2)
    best = {family: (float("inf"), 0.0, 0) for family in FAMILIES}
    with tempfile.TemporaryDirectory(prefix="openavs-trackers-") as tmp:
        frames = write_frames(Path(tmp), frame_count, (width, height))
        for tracker in trackers.values():
            time_tracker(tracker, frames[:3])  # warm-up: lazy initialisation, kernel choices
        for _ in range(repeats):
            for family, tracker in trackers.items():
                best[family] = min(best[family], time_tracker(tracker, frames))
    per_frame = {family: best[family][0] / frame_count for family in FAMILIES}
    for family in FAMILIES:
        print(f"{family:<11} {per_frame[family]:.3f} s/frame, peak session {best[family][1]:.1f} MB")
    return {
        "model": model_id,
        "face": face,
        "device": registry.device,
        "frames": frame_count,
        "size": [width, height],
        "threads": torch.get_num_threads(),
        **{f"{family}_s_per_frame": round(per_frame[family], 6) for family in FAMILIES},
        "meta_over_transformers": round(per_frame["sam2_meta"] / per_frame["sam2_video"], 3),
        **{f"{family}_peak_session_mb": round(best[family][1], 2) for family in FAMILIES},
        **{f"{family}_tracked_frames": best[family][2] for family in FAMILIES},
        "build_s": build_s,
    }
