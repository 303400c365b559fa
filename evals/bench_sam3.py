"""`python -m evals.bench_sam3`: SAM 3 over the agent's refine rounds, with its vision-feature cache against without.

Builds facebook/sam3's detector at real size with random weights (no downloads), once, and runs the rounds as the
graphs run SAM 3 in image mode (`--profile sam3`): per round, the Sam3Grounder role detects the phrases on every
frame (a ViT pass per frame unless its features are cached, a decoder pass per phrase), then the Sam3Segmenter role
answers the boxes found. Rounds differ as the built-in planner's do: the box threshold steps up by 0.05 from 0.25.
The uncached way (`vision_cache_frames=0`, what SAM 3 did before the cache) runs first, then the cached way; both
share the model, start cold and see the same synthetic frames; one untimed call warms the model up first. Their
instances must be equal. Prints a table, then as the LAST stdout line one JSON object: frames, rounds, uncached_s,
cached_s, speedup, vit_passes_uncached, vit_passes_cached, cache_mb and instances_equal.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

from evals.bench_options import add_model_options, count, parse_with_registry, phrase_list
from tools.cli import ArgumentParser
from tools.models.base import ModelSpec
from tools.models.sam3 import VISION_CACHE_FRAMES, Sam3TextSegmenter
from tools.models.sam3_roles import InstanceStore, Sam3Grounder, Sam3Segmenter
from tools.synthclip import synthetic_frame

Answer = list[tuple[str, tuple[float, ...], float, bytes]]
"""Per frame and round, what the segmenter role answered: (phrase, box, score, packed mask bits) per instance."""


def run_rounds(
    text_segmenter: Sam3TextSegmenter, images: list[Image.Image], phrases: list[str], rounds: int
) -> tuple[list[float], list[Answer]]:
    """Seconds of each round, and every frame's answer in every round, through the grounder and segmenter roles."""
    store = InstanceStore()
    grounder = Sam3Grounder(text_segmenter.spec, text_segmenter, store)
    segmenter = Sam3Segmenter(text_segmenter.spec.model_copy(update={"role": "segmenter"}), store)
    seconds, answers = [], []
    for r in range(rounds):
        start = time.perf_counter()
        found = grounder.detect(images, [phrases] * len(images), list(range(len(images))), 0.25 + 0.05 * r, 0.25)
        for image, dets in zip(images, found, strict=True):
            masks, scores = segmenter.segment(image, dets.boxes)
            answers.append(
                [
                    (p, tuple(b.tolist()), float(s), np.packbits(m).tobytes())
                    for p, b, s, m in zip(dets.phrases, dets.boxes, scores, masks, strict=True)
                ]
            )
        if text_segmenter.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds, answers


def _parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m evals.bench_sam3", description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=count, default=3, help="frames of the clip (default 3)")
    parser.add_argument("--rounds", type=count, default=3, help="rounds: the first plus refine rounds (default 3)")
    parser.add_argument("--phrases", type=phrase_list, default="dog,piano", help="comma-separated (default dog,piano)")
    add_model_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args, registry = parse_with_registry(_parser(), argv)
    spec = ModelSpec(role="text_segmenter", family="sam3", model_id="facebook/sam3", face=args.face)
    start = time.perf_counter()
    model = registry.get(spec)
    build_s = round(time.perf_counter() - start, 2)
    images = [Image.fromarray(synthetic_frame(k, *args.size)) for k in range(args.frames)]
    ways = {
        name: Sam3TextSegmenter(spec, model.model, model.processor, registry.device, vision_cache_frames=frames)
        for name, frames in (("uncached", 0), ("cached", VISION_CACHE_FRAMES))
    }
    model.segment_text(
        images[0], args.phrases[:1]
    )  # warm-up, outside both ways: first-call allocations, kernel choices
    results: dict[str, Any] = {name: run_rounds(way, images, args.phrases, args.rounds) for name, way in ways.items()}
    print(f"{'round':<7}" + "".join(f"{name:>12}" for name in ways))
    for r in range(args.rounds):
        print(f"{r:<7}" + "".join(f"{results[name][0][r]:>11.2f}s" for name in ways))
    totals = {name: sum(results[name][0]) for name in ways}
    summary = {
        "face": args.face,
        "device": registry.device,
        "frames": args.frames,
        "rounds": args.rounds,
        "phrases": args.phrases,
        "size": list(args.size),
        "threads": torch.get_num_threads(),
        "uncached_s": round(totals["uncached"], 3),
        "cached_s": round(totals["cached"], 3),
        "speedup": round(totals["uncached"] / totals["cached"], 3),
        "rounds_s": {name: [round(s, 3) for s in results[name][0]] for name in ways},
        "vit_passes_uncached": ways["uncached"].stats.images,
        "vit_passes_cached": ways["cached"].stats.images,
        "cache_mb": round(ways["cached"].cached_feature_bytes() / 1e6, 1),
        "instances": sum(len(answer) for answer in results["cached"][1]),
        "instances_equal": results["uncached"][1] == results["cached"][1],
        "build_s": build_s,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
