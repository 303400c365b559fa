"""What the model benches (evals.bench_trackers, evals.bench_sam3, partly evals.bench_e2e and evals.bench) share past
their options (evals.bench_args): the device check, the offline registry they build models in, and the synthetic
frames they run on. Imports torch: the benches import this module only once their options have been parsed."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from PIL import Image

from tools.errors import InputError
from tools.frames import FrameRef, frame_refs_from_files
from tools.models.registry import ModelRegistry, pick_device
from tools.synthclip import synthetic_frame


def offline_registry(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ModelRegistry:
    """The registry on --device, offline (random weights: nothing is ever downloaded), with --threads applied
    (evals.bench_args.add_model_options); a device this machine lacks is a usage error of `parser` (one line, exit
    code 2)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    return ModelRegistry(device_or_usage_error(parser, args.device))


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
