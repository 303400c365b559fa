"""`python -m agent.solve CLIP`: masks of the objects making the sound in a video, in a run folder.

Exit codes: 0 success; 2 bad input (one line on stderr, no traceback); 1 internal failure (one line naming the
trace); 130 interrupted (the run can be resumed with --resume RUN_DIR).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.cli_names import GRAPH_NAMES, PROFILE_NAMES, SEGMENTATION_MODES
from agent.run_record import RUN_RECORD, resumable_record
from tools.cache import open_cache
from tools.cli import ArgumentParser
from tools.datamodel import frame_number
from tools.errors import InputError, OpenAVSError
from tools.media import probe_clip


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m agent.solve", description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", help="the video file (mp4, mov, webm, ...)")
    parser.add_argument("--profile", default="default", choices=PROFILE_NAMES, help="model set (default: default)")
    parser.add_argument("--out", help="run folder to create (default: runs/<clip>-<date-time>)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in RUN_DIR")
    parser.add_argument("--graph", default="agent", choices=GRAPH_NAMES, help="agent (default): planner, "
                        "critique and refinement; pipeline: the paper's fixed pipeline")  # fmt: skip
    parser.add_argument("--frames", help="avsbench (default) | uniform:N | fps:F")
    parser.add_argument("--max-frames", type=int, help="at most this many frames (default 64)")
    parser.add_argument("--device", help="cpu | cuda | cuda:N | mps (default: cuda, then mps, then cpu)")
    parser.add_argument("--weights", default="profile", choices=["profile", "random"], help="random: real-size "
                        "architectures with random weights, for cost measurements (outputs meaningless)")  # fmt: skip
    parser.add_argument("--captioner", help="audio-language model: hub id, folder, FAMILY:ID, or none")
    parser.add_argument("--queries", help="captioner queries separated by '|' (paper: the three Pengi queries)")
    parser.add_argument("--tagger", help="audio tagger: hub id, folder, FAMILY:ID, or none")
    parser.add_argument("--grounder", help="GroundingDINO: hub id, folder or FAMILY:ID")
    parser.add_argument("--segmenter", help="SAM2: hub id, folder or FAMILY:ID")
    parser.add_argument("--translator", choices=["llm", "lexicon"], help="captions -> nouns: an LLM or the built-in "
                        "lexicon (default: LLM when configured)")  # fmt: skip
    parser.add_argument("--llm", help="chat model name for translation (OpenAI-compatible)")
    parser.add_argument("--llm-base-url", help="base URL of an OpenAI-compatible server (or OPENAI_BASE_URL)")
    parser.add_argument("--variant", choices=["none", "prompt", "frame", "both"], help="LLM consistency variant")
    parser.add_argument("--phrases", help="comma-separated object phrases for every frame: skips audio and LLM "
                        "(the paper's OpenAVS* setting)")  # fmt: skip
    parser.add_argument("--box-threshold", type=float, help="GroundingDINO box threshold (paper: 0.25)")
    parser.add_argument("--text-threshold", type=float, help="GroundingDINO text threshold (default 0.25)")
    parser.add_argument("--segmentation", default="image", choices=SEGMENTATION_MODES,
                        help="image: every frame on its own (the paper); propagate: video tracking (SAM2's, or SAM "
                        "3's tracker with --profile sam3) from the best-grounded frame; video: SAM 3's video model "
                        "detects and tracks the phrases on every frame (--profile sam3)")  # fmt: skip
    parser.add_argument("--propagator", help="propagate mode: the tracker, a family run on the segmenter's "
                        "checkpoint (sam2_video, the default for SAM2; sam2_meta: Meta's sam2 video predictor) or "
                        "FAMILY:ID (a hub id, or for sam2_meta a Meta .pt checkpoint)")  # fmt: skip
    parser.add_argument("--seed-frames", type=int, metavar="N", help="propagate mode: frames grounded to pick "
                        "the seed (default 3; 0: every frame); the others are grounded only where tracking "
                        "drifts")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="compile the captioner's decoding (static KV "
                        "cache, torch.compile on a GPU): the first answer waits for compilation, later ones are "
                        "faster")  # fmt: skip
    parser.add_argument("--no-overlay", action="store_true", help="skip overlay.mp4")
    parser.add_argument("--planner", metavar="{builtin,llm,local:MODEL}", help="agent planner: the built-in policy, "
                        "the --llm model, or a local transformers chat model (hub id, folder or tiny) with tool "
                        "calling (default: the LLM if configured)")  # fmt: skip
    parser.add_argument("--critic", help="agent critic VLM: hub id, folder, FAMILY:ID, or none (checks only)")
    parser.add_argument("--critic-llm", help="an OpenAI-compatible vision model as the critic (uses --llm-base-url)")
    parser.add_argument("--max-rounds", type=int, help="agent: ground-segment-critique rounds (default 3)")
    parser.add_argument("--max-tool-calls", type=int, help="agent: tool calls (default 40)")
    parser.add_argument("--deadline", type=float, help="agent: wall-clock budget in seconds (default 1800)")
    parser.add_argument("--cache-dir", help="cache of captions and LLM answers (default ~/.cache/openavs-agent)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    return parser


def _summary(state: dict, run_dir: Path) -> str:
    lines = [f"run folder: {run_dir}"]
    for frame, phrases in zip(state["frames"], state["phrases"], strict=True):
        lines.append(
            f"  frame {frame_number(frame['index'])} at {frame['timestamp_s']:.2f} s: {', '.join(phrases) or '-'}"
        )
    return "\n".join(lines)


def _trace_note(run_dir: Path | None) -> str:
    """' (trace: RUN_DIR/trace.jsonl)' when the run got as far as writing one, else ''."""
    trace = run_dir / "trace.jsonl" if run_dir is not None else None
    return f" (trace: {trace})" if trace is not None and trace.is_file() else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_dir: Path | None = None
    try:
        if not (args.resume or args.clip):
            raise InputError("give a video file to segment (or --resume RUN_DIR)")
        record = resumable_record(Path(args.resume), GRAPH_NAMES) if args.resume else None
        info = None if record is not None else probe_clip(args.clip)
        cache = None if args.no_cache else open_cache(args.cache_dir)
        # Only now, with the clip or run folder known to be usable: these load torch, transformers and LangGraph
        # (seconds), which a mistyped path need not wait for.
        from agent.cli_settings import settings_from_args
        from agent.runner import new_run_dir, resumed_run, run_graph
        from graphs.pipeline import VideoSource

        if record is not None:
            run_dir = Path(args.resume)
            graph, settings, source = resumed_run(record, run_dir)
            resume = True
        else:
            settings = settings_from_args(args)
            source = VideoSource(kind="video", path=str(Path(args.clip).resolve()))
            run_dir = new_run_dir(args.out, Path(info.path).stem)
            graph, resume = args.graph, False
        if not settings.meaningful:
            print("note: some models have random weights; the masks are meaningless", file=sys.stderr)
        state = run_graph(run_dir, settings, source, graph=graph, cache=cache, resume=resume)
    except OpenAVSError as err:
        trace = _trace_note(run_dir) if err.exit_code == 1 else ""  # a failed run, not refused input
        print(f"error: {err}{trace}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        where = f"; resume with --resume {run_dir}" if run_dir and (run_dir / RUN_RECORD).is_file() else ""
        print(f"interrupted{where}", file=sys.stderr)
        return 130
    except Exception as err:  # one line for the user; the trace has the record
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"internal error: {type(err).__name__}: {first}{_trace_note(run_dir)}", file=sys.stderr)
        return 1
    for warning in state.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    if cache is not None and cache.write_errors:
        print(f"warning: {cache.write_errors} answer(s) not cached ({cache.last_write_error})", file=sys.stderr)
    if state.get("final", {}).get("flagged"):
        print(f"flagged: {state['final']['flagged']}", file=sys.stderr)
    print(_summary(state, run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
