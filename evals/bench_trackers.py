"""`python -m evals.bench_trackers`: SAM2 video tracking in transformers against Meta's sam2 package, same inputs.

Builds the real-size architecture of --model twice with random weights (no downloads): transformers' Sam2VideoModel
(the sam2_video propagator, the default) and Meta's SAM2VideoPredictor (sam2_meta). Both track the same two boxes
from the middle frame of the same synthetic clip, forward then backward, streaming with bounded memory. After one
untimed warm-up each, it times one full propagation per tracker, in turn, `--repeats` times and keeps each tracker's
fastest. Masks are not compared: the two random initialisations differ. Prints a table, then as the LAST stdout line
one JSON object: frames, sam2_video_s_per_frame, sam2_meta_s_per_frame, meta_over_transformers, and each tracker's
peak session MB.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evals.bench_options import add_model_options, count, parse_with_registry, write_frames
from tools.cli import ArgumentParser
from tools.frames import FrameRef
from tools.models.base import ModelSpec

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


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evals.bench_trackers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="facebook/sam2.1-hiera-tiny", help="the sam2.1 architecture to build")
    parser.add_argument("--frames", type=count, default=8, help="frames of the clip (default 8)")
    parser.add_argument("--repeats", type=count, default=2, help="timed propagations per tracker (fastest kept)")
    add_model_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, registry = parse_with_registry(_parser(), argv)
    width, height = args.size
    trackers, build_s = {}, {}
    for family in FAMILIES:
        start = time.perf_counter()
        trackers[family] = registry.get(
            ModelSpec(role="propagator", family=family, model_id=args.model, face=args.face)
        )
        build_s[family] = round(time.perf_counter() - start, 2)
    best = {family: (float("inf"), 0.0, 0) for family in FAMILIES}
    with tempfile.TemporaryDirectory(prefix="openavs-trackers-") as tmp:
        frames = write_frames(Path(tmp), args.frames, (width, height))
        for tracker in trackers.values():
            time_tracker(tracker, frames[:3])  # warm-up: lazy initialisation, kernel choices
        for _ in range(args.repeats):
            for family, tracker in trackers.items():
                best[family] = min(best[family], time_tracker(tracker, frames))
    per_frame = {family: best[family][0] / args.frames for family in FAMILIES}
    for family in FAMILIES:
        print(f"{family:<11} {per_frame[family]:.3f} s/frame, peak session {best[family][1]:.1f} MB")
    summary = {
        "model": args.model,
        "face": args.face,
        "device": registry.device,
        "frames": args.frames,
        "size": [width, height],
        "threads": torch.get_num_threads(),
        **{f"{family}_s_per_frame": round(per_frame[family], 6) for family in FAMILIES},
        "meta_over_transformers": round(per_frame["sam2_meta"] / per_frame["sam2_video"], 3),
        **{f"{family}_peak_session_mb": round(best[family][1], 2) for family in FAMILIES},
        **{f"{family}_tracked_frames": best[family][2] for family in FAMILIES},
        "build_s": build_s,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
