"""`python -m evals.bench_e2e CLIP [--profile default]`: one clip end to end through the pipeline (or agent), warm.

Builds the profile's models with random weights (real-size architectures, no downloads), runs the clip `--warmup`
times (default once) to warm up (CUDA kernels, allocator) and then `--repeats` more times in the same process with
every cache cold, and prints the wall-clock seconds of each run, end to end (the whole graph run: run folder, trace,
checkpoints and every node), and each node's seconds (load, describe_audio, decode_frames, translate, ground,
segment, emit) of the fastest timed run; model building is reported apart. The frames decode on a background thread
while the audio is described, so decode_frames is only the wait for them and the nodes' sum is not the run's time.

Random weights cannot make the audio-language model name an object, so the vision stages would see no phrase: the
timed runs therefore pass the captioner's output through unchanged but translate with the fixed `--phrases`
(default "dog"), and keep GroundingDINO's `--top-k` best boxes per frame (random GroundingDINO passes hundreds).
The captioner and tagger still run in full. Remote LLM latency is excluded: translation uses no LLM.
`--compile` decodes the captioner with a static KV cache that transformers compiles on a GPU (ModelSpec.compile):
the first warm-up run pays the compilation and is reported as first_run_s. Without a GPU, `--captioner-wait-s S` has
each captioner call first wait S seconds with the GIL released, as the host does while a GPU captions: what decoding
the frames ahead can hide (`--compare-decode-ahead`).
`--graph agent` runs the agent instead: the built-in planner, the profile's critic and as many refine rounds as its
verdicts ask for (random weights give verdicts of no meaning; on a CPU, the same ones in every run), each node and
tool call reporting its seconds under its name.
The LAST stdout line is a JSON object: stages_s, model_calls_s (captioner, tagger), total_s (the fastest timed run's
wall-clock seconds), median_total_s and run_totals_s (every timed run), stage_sum_s (the fastest run's nodes
summed), first_run_s (the first warm-up run), warmup, model_build_s, device, profile, graph; with
`--compare-decode-ahead`, sequential_decode (the same three figures for the runs that decode the frames after
describing the audio) and decode_ahead_speedup (the ratio of the two medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from agent.cli_names import GRAPH_NAMES, PROFILE_NAMES, SEGMENTATION_MODES
from evals.bench_args import count, seconds
from tools.cli import ArgumentParser
from tools.errors import InputError
from tools.media import probe_clip


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evals.bench_e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument("--profile", default="default", choices=PROFILE_NAMES)
    parser.add_argument("--graph", default="pipeline", choices=GRAPH_NAMES, help="pipeline (default): the paper's "
                        "fixed stages; agent: the built-in planner's rounds with the profile's critic")  # fmt: skip
    parser.add_argument("--phrases", default="dog", help="comma-separated phrases the translator answers with")
    parser.add_argument("--top-k", type=int, default=3, help="GroundingDINO boxes kept per frame")
    parser.add_argument("--repeats", type=count, default=3, help="timed runs after the warm-up (fastest reported)")
    parser.add_argument("--warmup", type=count, default=1, help="untimed runs first (default 1): more show whether a "
                        "device's first timed runs are slow only because they come first")  # fmt: skip
    parser.add_argument("--segmentation", default="image", choices=SEGMENTATION_MODES)
    parser.add_argument("--propagator", help="propagate mode's tracker, as in agent.solve (sam2_meta: Meta's sam2)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.add_argument("--compile", action="store_true", help="compile the captioner's decoding (static KV cache)")
    parser.add_argument("--compare-decode-ahead", action="store_true", help="alternate the timed runs with runs that "
                        "decode the frames after the audio is described, and report both")  # fmt: skip
    parser.add_argument("--captioner-wait-s", type=seconds, default=0.0, help="seconds each captioner call first waits "
                        "(GIL released): a GPU's captioning time, stood in for on a machine without one")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        probe_clip(args.clip)  # a clip that is not a video fails here, before minutes of model building
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    # Only now, with the options and the clip known to be usable: these load torch, transformers and LangGraph
    # (seconds), which --help or a mistyped path need not wait for.
    from agent.profiles import (
        agent_profile,
        base_profile,
        with_compiled_models,
        with_random_weights,
        with_segmentation,
    )
    from agent.runner import run_graph
    from evals.bench_options import device_or_usage_error
    from evals.bench_standins import FixedTranslator, MeteredGrounder, WaitingCaptioner
    from graphs.pipeline import VideoSource
    from tools.models.registry import ModelRegistry

    device = device_or_usage_error(parser, args.device)
    no_llm = {"device": device, "translator": "lexicon", "llm": None}
    if args.graph == "agent":
        settings = agent_profile(args.profile).model_copy(update={**no_llm, "planner": "builtin"})
    else:
        settings = base_profile(args.profile).model_copy(update=no_llm)
    settings = with_segmentation(settings, args.segmentation, args.propagator)
    settings = with_random_weights(settings)
    if args.compile:
        settings = with_compiled_models(settings)
    registry = ModelRegistry(settings.device)
    start = time.perf_counter()
    for spec in settings.model_specs():
        registry.get(spec)
    build_s = time.perf_counter() - start
    grounder = None  # video mode grounds inside SAM 3's video model: no grounder is loaded
    if settings.segmentation != "video":
        grounder = registry.get(settings.grounder)
        registry.install(settings.grounder, MeteredGrounder(grounder, args.top_k))
    propagator = registry.get(settings.propagator) if settings.propagator else None
    if args.captioner_wait_s > 0:
        registry.install(settings.captioner, WaitingCaptioner(registry.get(settings.captioner), args.captioner_wait_s))
    translator = FixedTranslator(tuple(p.strip() for p in args.phrases.split(",") if p.strip()))
    # With --compare-decode-ahead the timed runs alternate with runs that decode the frames only after the audio
    # is described (the way before decode_ahead), on the same warm models, so machine drift hits both alike.
    ways = {"decode_ahead": settings}
    if args.compare_decode_ahead:
        ways["sequential_decode"] = settings.model_copy(update={"decode_ahead": False})
    runs: dict[str, list[tuple[float, dict[str, float], dict[str, float]]]] = {name: [] for name in ways}
    first_run_s = 0.0
    with tempfile.TemporaryDirectory(prefix="openavs-e2e-") as tmp:
        for attempt in range(args.warmup + args.repeats):
            timed = attempt >= args.warmup
            for name, way in ways.items() if timed else [("decode_ahead", settings)]:
                run_dir = Path(tmp) / f"run{attempt}-{name}"
                run_dir.mkdir()
                # Every run starts cold: no grounder outputs, text features or track kept from the run before.
                if hasattr(grounder, "output_cache"):
                    grounder.output_cache = None
                if hasattr(grounder, "text_features"):
                    grounder.text_features.clear()
                if propagator is not None:
                    registry.install(settings.propagator, propagator)
                start = time.perf_counter()
                state = run_graph(run_dir, way, VideoSource(kind="video", path=str(args.clip)), graph=args.graph,
                                  registry=registry, translator=translator, progress=lambda *_: None)  # fmt: skip
                wall_s = time.perf_counter() - start
                if timed:
                    runs[name].append((wall_s, state["timings_s"], _model_call_seconds(run_dir / "trace.jsonl")))
                elif attempt == 0:
                    first_run_s = wall_s
                # Wall-clock start and end (epoch s) to line runs up with the GPU's own log (nvidia-smi --loop-ms).
                end = time.time()
                span = f"{end - wall_s:.3f}-{end:.3f}"
                print(f"[e2e] run {attempt} {name} [{span}]: {wall_s:.3f} s {state['timings_s']}", file=sys.stderr,
                      flush=True)  # fmt: skip
    best_s, best, calls = min(runs["decode_ahead"], key=lambda run: run[0])
    totals = [round(wall_s, 4) for wall_s, _, _ in runs["decode_ahead"]]
    summary: dict[str, Any] = {
        "stages_s": {k: round(v, 4) for k, v in best.items()},
        "model_calls_s": {k: round(v, 4) for k, v in calls.items()},
        "total_s": round(best_s, 4),
        "median_total_s": statistics.median(totals),
        "run_totals_s": totals,
        "stage_sum_s": round(sum(best.values()), 4),
        "first_run_s": round(first_run_s, 2),
        "warmup": args.warmup,
        "compile": args.compile,
        "captioner_wait_s": args.captioner_wait_s,
        "model_build_s": round(build_s, 1),
        "frames": len(state["frames"]),
        "boxes": sum(len(d["boxes"]) for d in state["detections"]),
        "device": settings.device,
        "profile": args.profile,
        "graph": args.graph,
        "segmentation": args.segmentation,
        "propagator": settings.propagator.family if settings.propagator else None,
        "models": [s.model_id for s in settings.model_specs()],
    }
    if args.compare_decode_ahead:
        sequential = [round(wall_s, 4) for wall_s, _, _ in runs["sequential_decode"]]
        summary["sequential_decode"] = {
            "total_s": min(sequential),
            "median_total_s": statistics.median(sequential),
            "run_totals_s": sequential,
        }
        summary["decode_ahead_speedup"] = round(statistics.median(sequential) / statistics.median(totals), 3)
    print(json.dumps(summary))
    return 0


def _model_call_seconds(trace: Path) -> dict[str, float]:
    """Seconds per model_call span name (captioner, tagger, ...) in one run's trace.jsonl."""
    seconds: dict[str, float] = {}
    for line in trace.read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "model_call":
            seconds[record["name"]] = seconds.get(record["name"], 0.0) + record["ms"] / 1000
    return seconds


if __name__ == "__main__":
    raise SystemExit(main())
