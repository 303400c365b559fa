"""`python -m evals.bench [--quick]`: the naive way against the optimized way, in one run, on the same inputs.

Builds the real-size GroundingDINO-tiny and SAM2.1-hiera-tiny (image and video) architectures with random weights (no
downloads) and times the vision path plus the framework: a short clip (10 sampled frames) over refine rounds, naive vs
optimized in image mode (equivalent outputs) and in propagate mode (the headline; see evals/bench_core.py), and a
long clip through the optimized way to show that memory stays flat. The audio
models are scripted stand-ins (the audio-language model is 8B): the figures cover the vision models, the graph,
decoding and output writing, not captioning or translation.

Each phase runs in its own subprocess so that its peak RSS is its own. Prints a table, then as the LAST stdout line
one JSON object: naive_s, optimized_s, speedup, overhead_fraction, peak_rss_mb_short, peak_rss_mb_long, and more.

--quick (about 6-8 minutes on 2 CPU cores): 640x360 clips, GroundingDINO at 384 px max side, SAM2 at 384 px, a
60 s long clip. The full mode (1280x720, 800/1333 px, 1024 px, 120 s) is meant for GPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from evals.bench_args import frame_size
from evals.bench_config import BenchConfig, with_overrides
from tools.cli import ArgumentParser

# GroundingDINO's two-stage head needs >= 900 encoder tokens (its query count): 384x216 px gives ~1700, 256 px fails.
QUICK = BenchConfig(clip_size=(640, 360), grounder_max_side=384, sam2_image_size=384, long_seconds=60.0)
FULL = BenchConfig()


def busy_cores(sample_s: float = 1.0) -> float:
    """Cores other processes keep busy now: from two /proc/stat samples `sample_s` apart (Linux), else the 1-min
    load average (which lags: it still counts processes that ended a minute ago)."""

    def times() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields), fields[3] + fields[4]  # all jiffies, idle + iowait

    try:
        total0, idle0 = times()
        time.sleep(sample_s)
        total1, idle1 = times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cores = os.cpu_count() or 1
    return cores * (1.0 - (idle1 - idle0) / max(1, total1 - total0))


def auto_threads() -> int:
    """Torch CPU threads: the cores other processes are not using right now (at least 1).

    OpenMP threads that share cores with other processes stall at every barrier: measured here, GroundingDINO at
    384 px took 0.86 s with 2 threads on 2 idle cores, 2.5 s with 2 threads beside one busy process (1.5 s with 1
    thread), and ~10x longer under a load of 5. Both ways run with the same count, so their ratio stays fair.
    """
    cores = os.cpu_count() or 1
    return max(1, min(cores, cores - round(busy_cores())))


def _load_average() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _config(args: argparse.Namespace) -> BenchConfig:
    base = QUICK if args.quick else FULL
    return with_overrides(
        base,
        device=args.device,
        frames=args.frames,
        long_seconds=args.long_seconds,
        rounds=args.rounds,
        threads=args.threads or auto_threads(),
        grounder_batch=args.grounder_batch,
        cache_capacity=args.cache_capacity,
        seed_frames=args.seed_frames,
        clip_size=args.clip_size,
    )


def _run_phase(phase: str, cfg: BenchConfig, work: Path) -> dict[str, Any]:
    """One phase in a fresh interpreter (its own peak RSS); its JSON comes back through a file."""
    out = work / f"{phase}.json"
    cmd = [sys.executable, "-m", "evals.bench", "--phase", phase, "--config", json.dumps(cfg.to_dict())]
    cmd += ["--work", str(work), "--phase-out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    print(f"[bench] {phase} phase done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return json.loads(out.read_text())


def _row(name: str, *cells: float | str) -> str:
    def cell(v: float | str) -> str:
        return f"{v:>10.2f}" if isinstance(v, float) else f"{v:>10}"

    return f"| {name:<44} |" + "|".join(f"{cell(v)} " for v in cells) + "|"


def render_table(short: dict[str, Any], long: dict[str, Any], summary: dict[str, Any]) -> str:
    """Per-stage latency (s) of the three ways, peak memory (MB) of each, and the headline ratios."""
    ways = [short["naive"], short["optimized_image"], short["optimized"]]
    computes = [w["compute"] for w in ways]
    decode = [ways[0]["stages_s"].get("decode_all", 0.0)] + [w["stages_s"].get("graph.load", 0.0) for w in ways[1:]]
    cfg = short["config"]

    def row(name: str, key: str, count: bool = False) -> str:
        return _row(name, *(str(int(c[key])) if count else c[key] for c in computes))

    lines = [
        f"OpenAVS vision-path bench: face={cfg['face']} device={cfg['device']} clip {cfg['clip_size'][0]}x"
        f"{cfg['clip_size'][1]} @ {cfg['fps']:g} fps, GroundingDINO max side {cfg['grounder_max_side'] or '800/1333'},"
        f" SAM2 {cfg['sam2_image_size']} px, top {cfg['top_k']} boxes/frame, {cfg['threads']} torch threads,"
        " audio models scripted",
        f"short clip: {ways[2]['frames']} frames x {cfg['rounds']} rounds; long clip: {long['optimized']['frames']}"
        f" frames x {long['config']['long_rounds']} round (propagate); GroundingDINO batch {ways[2]['grounder_batch']};"
        f" propagate grounds {cfg['seed_frames']} seed candidates",
        "",
        _row("stage (seconds)", "naive", "opt image", "opt track"),
        "|" + "-" * 46 + ("|" + "-" * 11) * 3 + "|",
        _row("decode (naive: all frames; opt: load node)", *decode),
        row("GroundingDINO (detect calls)", "grounder_s"),
        row("  of which BERT text encoder", "text_s"),
        row("  forward passes (count)", "forward_passes", count=True),
        row("SAM2 image encoder", "embed_s"),
        row("  frames encoded (count)", "embed_calls", count=True),
        row("SAM2 mask decoder", "decode_s"),
        row("SAM2 video tracking", "track_s"),
        row("  tracked frames (count)", "tracked_frames", count=True),
        _row(
            "framework other (graph, IO, outputs, critic)",
            *(w["total_s"] - d - w["model_s"] for w, d in zip(ways, decode, strict=True)),
        ),
    ]
    for r, seconds in enumerate(zip(*(w["rounds_s"] for w in ways), strict=True)):
        lines.append(_row(f"round {r} total", *seconds))
    lines += [
        _row("TOTAL wall", *(w["total_s"] for w in ways)),
        _row("TOTAL process CPU", *(w["cpu_s"] for w in ways)),
        "",
        "optimized (track) round 0 graph nodes (s): "
        + ", ".join(f"{k.split('.', 1)[1]} {v:.2f}" for k, v in ways[2]["stages_s"].items() if k.startswith("graph.")),
        f"caches (image mode): SAM2 embeddings {ways[1]['embedding_cache']}; GroundingDINO outputs "
        f"{ways[1]['grounder_output_cache']}; BERT text features {ways[1]['text_feature_cache']}",
        f"image mode vs naive: {short['equality']}",
        f"propagate vs naive (union masks): {short['agreement_propagate']}",
        f"peak RSS (MB): short optimized {summary['peak_rss_mb_short']:.0f}, short naive "
        f"{summary['peak_rss_mb_naive']:.0f}, long optimized {summary['peak_rss_mb_long']:.0f} "
        f"(long/short {summary['long_over_short_rss']}); after model build {short['peak_rss_mb']['after_build']:.0f}",
        f"long clip: {long['optimized']['total_s']:.1f} s for {long['optimized']['frames']} frames "
        f"({long['optimized']['total_s'] / max(1, long['optimized']['frames']):.2f} s/frame), model "
        f"{long['optimized']['model_s']:.1f} s",
        f"speedup {summary['speedup']}x wall ({summary['speedup_cpu']}x CPU), image mode alone "
        f"{summary['speedup_image_mode']}x; framework overhead {summary['overhead_s']:.2f} s = "
        f"{100 * (summary['overhead_fraction'] or 0):.1f}% of model compute (image mode "
        f"{100 * (summary['overhead_fraction_image_mode'] or 0):.1f}%)",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evals.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs: finishes in < 10 min on 2 CPU cores")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.add_argument("--frames", type=int, help="sampled frames of the short clip (= its seconds; default 10)")
    parser.add_argument("--clip-size", type=frame_size, help="WxH of both clips (default 640x360 quick, 1280x720 full)")
    parser.add_argument("--long-seconds", type=float, help="length of the long clip (default 60 quick, 120 full)")
    parser.add_argument("--rounds", type=int, help="ground -> segment rounds on the short clip, the first included "
                        "(default 3: the first and two refine rounds, the agent's default budget)")  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the cores not already busy)")
    parser.add_argument(
        "--grounder-batch", type=int, help="images per GroundingDINO forward (default 1 on CPU, 4 else)"
    )
    parser.add_argument("--cache-capacity", type=int, help="SAM2 embeddings kept (default: the pipeline's default)")
    parser.add_argument("--seed-frames", type=int, help="propagate mode's seed candidates (default 3, as the product)")
    parser.add_argument("--work", help="folder for clips and run folders (default: a temporary one)")
    parser.add_argument("--phase", choices=["short", "long"], help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--phase-out", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random weights: nothing is ever downloaded
    # Only now, with the options known to be usable: these load torch, transformers and LangGraph (seconds), which
    # --help or a mistyped option need not wait for.
    from evals.bench_core import bench_long, bench_short, summarize
    from evals.bench_options import device_or_usage_error

    if args.phase:
        cfg = BenchConfig.from_dict(json.loads(args.config))
        result = (bench_short if args.phase == "short" else bench_long)(cfg, Path(args.work))
        Path(args.phase_out).write_text(json.dumps(result))
        return 0
    cfg = with_overrides(_config(args), device=device_or_usage_error(parser, args.device))
    start, load_start = time.perf_counter(), _load_average()
    with tempfile.TemporaryDirectory(prefix="openavs-bench-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        short = _run_phase("short", cfg, work)
        long = _run_phase("long", cfg, work)
    summary = {
        **summarize(short, long),
        "quick": bool(args.quick),
        "threads": cfg.threads,
        "load_avg_start": load_start,  # other processes' load makes wall times noisy: read them with this
        "load_avg_end": _load_average(),
        "bench_wall_s": round(time.perf_counter() - start, 1),
    }
    print(render_table(short, long, summary))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
