"""`python -m evals.bench_decode CLIP [CLIP ...]`: decoding a clip's sampled frames, with and without skipping.

Times tools.media.decode_frames at the frames the sampling strategy picks (`--frames`, default avsbench: 5 frames
near the end of each second of a 5 s clip, so nearly the whole clip is decoded), once decoding every frame (the
way before) and once letting the decoder skip the non-reference frames no sampled time shows, alternating the two
`--repeats` times per clip after one warm-up each, and checks that both give the same frames, pixel for pixel.
Times include converting the sampled frames to RGB images, the same work in both. The LAST stdout line is a JSON
object: per clip the median seconds of each way and their ratio, and over all clips the sums of the medians,
their ratio (speedup) and same_frames.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from evals.bench_args import count
from tools.cli import ArgumentParser
from tools.errors import InputError
from tools.media import DecodedFrame, decode_frames, probe_clip
from tools.sampling import parse_frame_strategy, select_timestamps


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evals.bench_decode", description=__doc__.split("\n\n")[0])
    parser.add_argument("clips", type=Path, nargs="+", metavar="CLIP")
    parser.add_argument("--frames", default="avsbench", help="avsbench, uniform:N or fps:F (as agent.solve)")
    parser.add_argument("--repeats", type=count, default=5, help="timed decodes of each way per clip")
    return parser


def _timed(clip: Path, times: list[float], skip_unshown: bool) -> tuple[float, list[DecodedFrame]]:
    start = time.perf_counter()
    frames = list(decode_frames(clip, times, skip_unshown=skip_unshown))
    return time.perf_counter() - start, frames


def _same(a: list[DecodedFrame], b: list[DecodedFrame]) -> bool:
    return len(a) == len(b) and all(
        x.pts_s == y.pts_s and np.array_equal(np.asarray(x.image), np.asarray(y.image))
        for x, y in zip(a, b, strict=True)
    )


def bench_clip(clip: Path, times: list[float], repeats: int) -> dict[str, Any]:
    """Median seconds of `repeats` decodes each way (after a warm-up of each), their ratio, and whether the two
    ways gave the same frames."""
    seconds: dict[bool, list[float]] = {False: [], True: []}
    _, plain = _timed(clip, times, False)
    _, skipping = _timed(clip, times, True)
    for attempt in range(repeats):
        for skip in (False, True) if attempt % 2 == 0 else (True, False):  # alternate: neither way always goes first
            seconds[skip].append(_timed(clip, times, skip)[0])
    plain_s, skipping_s = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "frames": len(times),
        "plain_s": round(plain_s, 6),
        "skipping_s": round(skipping_s, 6),
        "speedup": round(plain_s / skipping_s, 3),
        "same_frames": _same(plain, skipping),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        strategy = parse_frame_strategy(args.frames)
        sampled = {clip: select_timestamps(probe_clip(clip), strategy) for clip in args.clips}
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    results: dict[str, Any] = {}
    for clip, times in sampled.items():
        results[clip.name] = result = bench_clip(clip, times, args.repeats)
        print(f"[decode] {clip.name}: {result}", file=sys.stderr, flush=True)
    plain_s = sum(r["plain_s"] for r in results.values())
    skipping_s = sum(r["skipping_s"] for r in results.values())
    summary = {
        "clips": results,
        "plain_s": round(plain_s, 6),
        "skipping_s": round(skipping_s, 6),
        "speedup": round(plain_s / skipping_s, 3),
        "same_frames": all(r["same_frames"] for r in results.values()),
        "frames": args.frames,
        "repeats": args.repeats,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
