"""`python -m evals.bench_sam3`: SAM 3 over the agent's refine rounds, with its ViT-output cache against without.

Builds facebook/sam3 at real size with random weights (no downloads), once, and runs the rounds as the graphs run
SAM 3 (`--profile sam3`) in one segmentation mode:
- `--mode image` (default): per round, the Sam3Grounder role detects the phrases on every frame (a ViT pass per
  frame unless cached, a decoder pass per phrase), then the Sam3Segmenter role answers the boxes found;
- `--mode video` (`--segmentation video`): per round, SAM 3's video model detects and tracks the phrases through
  the clip (a ViT pass per frame unless cached, a detector pass per phrase, the tracker per object);
- `--mode propagate` (`--segmentation propagate`): per round, the Sam3Grounder role detects the phrases on the seed
  candidates, then SAM 3's tracker, on the detector's ViT, carries the best-grounded frame's best two instances
  through the clip (a ViT pass per frame grounded and per frame tracked unless cached: the two share one cache).
Rounds differ as the built-in planner's do: the threshold steps up by 0.05 from 0.25. The uncached way (cache of 0
frames, what SAM 3 did before the cache) runs first, then the cached way; both share the model, start cold and see
the same synthetic frames; one untimed call warms the model up first. Their answers must be equal. Prints a table,
then as the LAST stdout line one JSON object: mode, frames, rounds, uncached_s, cached_s, speedup,
vit_passes_uncached, vit_passes_cached, cache_mb, parameters_mb (what the mode's models hold, a shared ViT once),
parameters_mb_without_sharing (each model with its own ViT), instances and instances_equal.
"""

from __future__ import annotations

import argparse
import json

from agent.cli_names import SEGMENTATION_MODES
from evals.bench_args import add_model_options, count, phrase_list
from tools.cli import ArgumentParser


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evals.bench_sam3", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=SEGMENTATION_MODES, default="image", help="segmentation mode (default image)")
    parser.add_argument("--frames", type=count, default=3, help="frames of the clip (default 3)")
    parser.add_argument("--rounds", type=count, default=3, help="rounds: the first plus refine rounds (default 3)")
    parser.add_argument("--phrases", type=phrase_list, default="dog,piano", help="comma-separated (default dog,piano)")
    add_model_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # Only now, with the options known to be usable: these load torch and transformers (seconds), which --help or a
    # mistyped option need not wait for.
    from evals.bench_options import offline_registry
    from evals.bench_sam3_core import compare_caches

    registry = offline_registry(parser, args)
    summary = compare_caches(registry, args.mode, args.frames, args.rounds, args.phrases, args.size, args.face)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
