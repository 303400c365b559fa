"""What the model benches (evals.bench_trackers, evals.bench_sam3, partly evals.bench_e2e) share: their option
types, the frame size, device, torch threads and face options, the offline registry they build models in, and the
synthetic frames they run on."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import get_args

import torch
from PIL import Image

from evals.bench import frame_size
from tools.errors import InputError
from tools.frames import FrameRef, frame_refs_from_files
from tools.models.base import Face
from tools.models.registry import ModelRegistry, pick_device
from tools.synthclip import synthetic_frame


def count(text: str) -> int:
    """A count of frames, rounds or repeats: an integer of at least 1 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def phrase_list(text: str) -> list[str]:
    """'dog, piano' -> ['dog', 'piano'] (argparse type): at least one phrase."""
    phrases = [p.strip() for p in text.split(",") if p.strip()]
    if not phrases:
        raise argparse.ArgumentTypeError(f"expected comma-separated phrases, got {text!r}")
    return phrases


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--size WxH (default 640x360), --device, --threads and the hidden --face (tests pass tiny)."""
    parser.add_argument("--size", default=(640, 360), type=frame_size, help="WxH of the frames (default 640x360)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: the best available)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--face", default="random", choices=get_args(Face), help=argparse.SUPPRESS)


def parse_with_registry(
    parser: argparse.ArgumentParser, argv: list[str] | None
) -> tuple[argparse.Namespace, ModelRegistry]:
    """The parsed options and the registry on --device, offline (random weights: nothing is ever downloaded), with
    --threads applied; a device this machine lacks is a usage error of `parser` (one line, exit code 2)."""
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, ModelRegistry(device_or_usage_error(parser, args.device))


def device_or_usage_error(parser: argparse.ArgumentParser, requested: str | None) -> str:
    """pick_device(requested); a device this machine lacks (or an unknown one) is a usage error of `parser`."""
    try:
        return pick_device(requested)
    except InputError as err:
        parser.error(str(err))


def write_frames(folder: Path, count: int, size: tuple[int, int]) -> list[FrameRef]:
    """`count` PNG frames of `size` (w, h) px from tools.synthclip (a disc and a square moving), 1 frame per second."""
    paths = [folder / f"{k:05d}.png" for k in range(count)]
    for k, path in enumerate(paths):
        Image.fromarray(synthetic_frame(k, *size)).save(path)
    return frame_refs_from_files(paths, [float(k) for k in range(count)])
