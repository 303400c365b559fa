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

from evals.bench_args import add_model_options, count
from tools.cli import ArgumentParser


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evals.bench_trackers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="facebook/sam2.1-hiera-tiny", help="the sam2.1 architecture to build")
    parser.add_argument("--frames", type=count, default=8, help="frames of the clip (default 8)")
    parser.add_argument("--repeats", type=count, default=2, help="timed propagations per tracker (fastest kept)")
    add_model_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # Only now, with the options known to be usable: these load torch and transformers (seconds), which --help or a
    # mistyped option need not wait for.
    from evals.bench_options import offline_registry
    from evals.bench_trackers_core import compare_trackers

    registry = offline_registry(parser, args)
    print(json.dumps(compare_trackers(registry, args.model, args.frames, args.size, args.repeats, args.face)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
