"""Command line of the AVSBench benchmark (evals/run_avsbench.py).

    uv run python evals/run_avsbench.py --root DIR --subset s4|ms3|avss|v3 --split test [--profile P]
        [--graph pipeline|agent] [--prompts audio|oracle] [--limit N] [--workers K] [--out DIR] [--max-errors N]
        [--no-cache | --cache-dir DIR] [model flags as in agent.solve]
    uv run python evals/run_avsbench.py --root DIR --subset s4 --predictions PRED_DIR [--out DIR]

The last line on stdout is one JSON object (miou, fscore, fscore_binary, n_videos, n_frames, ...; AVSS adds the
semantic_* pair). Progress goes to stderr. Exit codes: 0 done (failed clips included, see n_failed); 1 more than
--max-errors clips failed, or an internal error (one line); 2 bad input (one line, no traceback); 130 interrupted
(rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.cli_names import PROFILE_NAMES, SEGMENTATION_MODES
from agent.solve import build_parser as solve_parser
from evals.benchmark.options import GRAPHS, PROMPTS, BenchmarkOptions
from evals.datasets import SUBSETS
from tools.cli import ArgumentParser
from tools.errors import OpenAVSError

if TYPE_CHECKING:
    from graphs.context import PipelineSettings
    from tools.models.registry import ModelRegistry
    from tools.translate import Translator

LINE_KEYS = (
    "subset", "split", "profile", "prompts", "miou", "fscore", "fscore_binary", "n_videos", "n_frames",
    "fscore_batch_size", "semantic_miou", "semantic_fscore", "semantic_miou_unpadded", "semantic_fscore_unpadded",
    "semantic_pad_to", "n_clips", "n_failed", "meaningful", "out",
)  # fmt: skip

# The model flags below mean what they mean in agent.solve; its parser supplies the defaults of everything else.
MODEL_FLAGS = (
    "profile", "graph", "device", "weights", "captioner", "tagger", "grounder", "segmenter", "queries", "translator",
    "llm", "llm_base_url", "variant", "box_threshold", "text_threshold", "segmentation", "propagator",
    "compile",
)  # fmt: skip
_ORACLE_PLACEHOLDER = "oracle"  # per-clip class names replace it; giving phrases skips the LLM requirement


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python evals/run_avsbench.py", description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, type=Path, help="AVSBench folder (the subset's folder or one above it)")
    p.add_argument("--subset", required=True, choices=SUBSETS)
    p.add_argument("--split", default="test", help="CSV split to evaluate (default test)")
    p.add_argument("--profile", default="default", choices=PROFILE_NAMES, help="model set (default: default)")
    p.add_argument("--graph", default="pipeline", choices=GRAPHS, help="pipeline (default): the paper's fixed "
                   "pipeline; agent: planner, critique and refinement")  # fmt: skip
    p.add_argument("--prompts", default="audio", choices=PROMPTS, help="audio: ALM + translator; oracle: the "
                   "clip's class names (the paper's OpenAVS*)")  # fmt: skip
    p.add_argument("--limit", type=int, help="only the first N clips of the split")
    p.add_argument("--workers", type=int, default=1, help="clips in parallel (threads sharing the models)")
    p.add_argument("--out", type=Path, help="output folder (default runs/avsbench-<subset>-<split>-<profile>-"
                   "<prompts>); the same command again resumes it")  # fmt: skip
    p.add_argument("--predictions", type=Path, help="score this prediction tree; runs no model")
    p.add_argument("--max-errors", type=int, help="stop once more than N clips failed (default: never)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the caption/LLM cache")
    p.add_argument("--cache-dir", type=Path, help="cache folder (default ~/.cache/openavs-agent)")
    p.add_argument("--fscore-batch-size", type=int, default=1, help="videos per F-score batch (1 = official)")
    p.add_argument("--pad-to", type=int, default=10, help="AVSS: pad videos to this many frames (official 10; "
                   "0: no padding)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress line")
    models = p.add_argument_group("models (as in agent.solve)")
    models.add_argument("--device", help="cpu | cuda | cuda:N | mps")
    models.add_argument("--weights", default="profile", choices=["profile", "random"])
    for role in ("captioner", "tagger", "grounder", "segmenter"):
        models.add_argument(f"--{role}", help="hub id, folder, FAMILY:ID (captioner/tagger: or none)")
    models.add_argument("--queries", help="captioner queries separated by '|'")
    models.add_argument("--translator", choices=["llm", "lexicon"])
    models.add_argument("--llm", help="chat model name for translation (OpenAI-compatible)")
    models.add_argument("--llm-base-url", help="base URL of an OpenAI-compatible server")
    models.add_argument("--variant", choices=["none", "prompt", "frame", "both"])
    models.add_argument("--box-threshold", type=float)
    models.add_argument("--text-threshold", type=float)
    models.add_argument("--segmentation", default="image", choices=SEGMENTATION_MODES, help="image (the paper), "
                        "propagate or video, as in agent.solve")  # fmt: skip
    models.add_argument("--propagator", help="propagate mode's tracker, as in agent.solve (sam2_meta: Meta's sam2)")
    models.add_argument("--compile", action="store_true", help="compile the captioner's decoding (worth it over "
                        "many clips: the first waits for compilation)")  # fmt: skip
    return p


def options_from_args(args: argparse.Namespace) -> BenchmarkOptions:
    """Options without the pipeline settings (see settings_from_flags)."""
    return BenchmarkOptions(
        root=args.root,
        subset=args.subset,
        split=args.split,
        profile=args.profile,
        graph=args.graph,
        prompts=args.prompts,
        limit=args.limit,
        workers=args.workers,
        out=args.out,
        predictions=args.predictions,
        max_errors=args.max_errors,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        fscore_batch_size=args.fscore_batch_size,
        pad_to=args.pad_to or None,
        show_progress=not args.quiet,
    )


def settings_from_flags(args: argparse.Namespace) -> PipelineSettings:
    """The pipeline settings of the model flags, built like agent.solve's (this loads torch and transformers)."""
    from agent.cli_settings import settings_from_args

    solve_args = solve_parser().parse_args([])
    vars(solve_args).update({k: getattr(args, k) for k in MODEL_FLAGS}, no_overlay=True)
    if args.prompts == "oracle":
        solve_args.phrases = _ORACLE_PLACEHOLDER
    return settings_from_args(solve_args)


def summary_line(metrics: dict[str, Any]) -> str:
    """The JSON object printed last on stdout."""
    return json.dumps({k: metrics[k] for k in LINE_KEYS if k in metrics})


def main(
    argv: Sequence[str] | None = None,
    *,
    registry: ModelRegistry | None = None,
    translator: Translator | None = None,
    settings: PipelineSettings | None = None,
) -> int:
    """Run the command line; `registry`, `translator` and `settings` let a test script inject fakes."""
    args = build_parser().parse_args(argv)
    try:
        options = options_from_args(args)
        options.validate()
        dataset = options.dataset()  # a wrong root, split or missing file is reported before the libraries load
        from evals.benchmark.runner import run_benchmark

        if options.predictions is None:
            options.settings = settings if settings is not None else settings_from_flags(args)
        metrics = run_benchmark(options, registry=registry, translator=translator, dataset=dataset)
    except OpenAVSError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user; clip errors are in their error.json
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"internal error: {type(err).__name__}: {first}", file=sys.stderr)
        return 1
    if metrics.get("meaningful") is False:
        print("note: some models have random or tiny weights; the scores are meaningless", file=sys.stderr)
    if "out" in metrics:
        print(f"report: {Path(metrics['out']) / 'report.md'}", file=sys.stderr)
    print(summary_line(metrics), flush=True)
    return 0
