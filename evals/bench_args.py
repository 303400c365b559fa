"""The option types and options the benches share, importable before any model library: a bench's `--help` and a
mistyped option answer at once instead of after seconds of importing torch and transformers."""

from __future__ import annotations

import argparse
from typing import get_args

from tools.models.base import Face


def count(text: str) -> int:
    """A count of frames, rounds or repeats: an integer of at least 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds: a finite number of at least 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, at least 0, got {text}")
    return value


def phrase_list(text: str) -> list[str]:
    """'dog, piano' -> ['dog', 'piano'] (argparse type): at least one phrase."""
    phrases = [p.strip() for p in text.split(",") if p.strip()]
    if not phrases:
        raise argparse.ArgumentTypeError(f"expected comma-separated phrases, got {text!r}")
    return phrases


def frame_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), both even and at least 64 px (x264 and GroundingDINO's token count need them)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1280x720, got {text!r}") from None
    if min(width, height) < 64 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"clip size must be even and at least 64x64 px, got {text!r}")
    return width, height


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--size WxH (default 640x360), --device, --threads and the hidden --face (tests pass tiny): the options of the
    benches that build models in an offline registry (evals.bench_options.offline_registry)."""
    parser.add_argument("--size", default=(640, 360), type=frame_size, help="WxH of the frames (default 640x360)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--face", default="random", choices=get_args(Face), help=argparse.SUPPRESS)
