"""The work of evals.bench_sam3 (see its docstring): SAM 3's adapters of one segmentation mode built once, and its
refine rounds timed without and with the ViT-output cache on the same synthetic frames. Imports torch and
transformers: evals.bench_sam3 imports it only once its options have been parsed."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from evals.bench_options import write_frames
from graphs.context import PipelineSettings
from tools.datamodel import Detections
from tools.frames import FrameRef, load_frame
from tools.models.base import Face, ModelSpec
from tools.models.registry import ModelRegistry
from tools.models.sam3 import Sam3TextSegmenter
from tools.models.sam3_detect_track import Sam3VideoSegmenter
from tools.models.sam3_roles import InstanceStore, Sam3Grounder, Sam3Segmenter
from tools.models.sam3_video import Sam3TrackerVideoPropagator
from tools.models.sam3_vision import VISION_CACHE_FRAMES, Sam3VisionCache
from tools.propagation import best_seed_frame, propagate_detections, seed_candidates

Answer = list[tuple]
"""One frame's answer in one round: per instance, what identifies it (phrase or prompt, box or object id), its
score and its packed mask bits."""
Round = Callable[[float], list[Answer]]
"""One round at a threshold: every frame's answer."""
Way = tuple[Any, ...]
"""The SAM 3 adapters one way runs (one per model), sharing one ViT-output cache."""


def _threshold(round_index: int) -> float:
    return 0.25 + 0.05 * round_index


def _image_round(way: Way, frames: list[FrameRef], phrases: list[str]) -> Round:
    """Rounds of image mode through the grounder and segmenter roles, as graphs/stages.py calls them."""
    [text_segmenter] = way
    images = [Image.open(ref.path).convert("RGB") for ref in frames]
    store = InstanceStore()
    grounder = Sam3Grounder(text_segmenter.spec, text_segmenter, store)
    segmenter = Sam3Segmenter(text_segmenter.spec.model_copy(update={"role": "segmenter"}), store)

    def run(threshold: float) -> list[Answer]:
        found = grounder.detect(images, [phrases] * len(images), list(range(len(images))), threshold, 0.25)
        answers = []
        for image, dets in zip(images, found, strict=True):
            masks, scores = segmenter.segment(image, dets.boxes)
            answers.append(
                [
                    (p, tuple(b.tolist()), float(s), np.packbits(m).tobytes())
                    for p, b, s, m in zip(dets.phrases, dets.boxes, scores, masks, strict=True)
                ]
            )
        return answers

    return run


def _video_round(way: Way, frames: list[FrameRef], phrases: list[str]) -> Round:
    """Rounds of video mode: SAM 3's video model over the whole clip."""
    [video_segmenter] = way

    def run(threshold: float) -> list[Answer]:
        return [
            [
                (p, i, float(s), np.packbits(m).tobytes())
                for p, i, s, m in zip(found.prompts, found.object_ids, found.scores, found.masks, strict=True)
            ]
            for found in video_segmenter.segment_video(frames, phrases, threshold)
        ]

    return run


SEED_FRAMES: int = PipelineSettings.model_fields["seed_frames"].default
"""Frames grounded to choose the seed (the pipeline's default)."""
SEED_OBJECTS = 2
"""Instances of the seed frame tracked: the best two (the graphs track all of them, dozens with random weights; the
tracker's cost per object is not what this bench measures)."""


def _propagate_round(way: Way, frames: list[FrameRef], phrases: list[str]) -> Round:
    """Rounds of propagate mode, as graphs/stages.py runs them: the Sam3Grounder role detects the phrases on the
    seed candidates (SEED_FRAMES frames evenly spaced), and SAM 3's tracker carries the SEED_OBJECTS best instances
    of the best-grounded frame through the clip."""
    text_segmenter, tracker = way
    grounder = Sam3Grounder(text_segmenter.spec, text_segmenter, InstanceStore())
    candidates = seed_candidates([True] * len(frames), SEED_FRAMES)
    images = [load_frame(frames[k])[0] for k in candidates]  # decoded as the tracker decodes them
    indices = [frames[k].index for k in candidates]

    def run(threshold: float) -> list[Answer]:
        found = grounder.detect(images, [phrases] * len(images), indices, threshold, 0.25)
        seed_index = best_seed_frame(found)
        if seed_index is None:
            return [[] for _ in frames]
        seed = next(dets for dets in found if dets.frame_index == seed_index)
        best = np.argsort(-seed.scores, kind="stable")[:SEED_OBJECTS]
        seed = Detections(seed.frame_index, seed.boxes[best], seed.scores[best], [seed.phrases[k] for k in best])
        return [
            [(o.phrase, o.object_id, o.mask_score, np.packbits(o.mask).tobytes()) for o in masks.objects]
            for masks in propagate_detections(tracker, frames, seed)
        ]

    return run


CACHES = (("uncached", 0), ("cached", VISION_CACHE_FRAMES))
"""The two ways, by the frames their ViT-output cache keeps: none (what SAM 3 did before the cache), or the default."""


def _spec(role: str, family: str, face: str) -> ModelSpec:
    return ModelSpec(role=role, family=family, model_id="facebook/sam3", face=face)


def _ways(registry: ModelRegistry, face: str, adapters: Sequence[tuple[str, str, type]]) -> tuple[Way, dict[str, Way]]:
    """The registry's adapters for `adapters` (role, family, adapter class), which share one ViT (warm-up only), and
    per way the same adapter classes on their models with one cache of the way's size."""
    shared = tuple(registry.get(_spec(role, family, face)) for role, family, _ in adapters)
    ways = {}
    for name, frames in CACHES:
        cache = Sam3VisionCache(frames)
        ways[name] = tuple(
            adapter_class(a.spec, a.model, a.processor, registry.device, cache)
            for a, (_, _, adapter_class) in zip(shared, adapters, strict=True)
        )
    return shared, ways


DETECTOR = ("text_segmenter", "sam3", Sam3TextSegmenter)
MODES: dict[str, tuple[list[tuple[str, str, type]], Callable[[Way, list[FrameRef], list[str]], Round]]] = {
    "image": ([DETECTOR], _image_round),
    "video": ([("video_segmenter", "sam3_video", Sam3VideoSegmenter)], _video_round),
    "propagate": ([DETECTOR, ("propagator", "sam3_tracker_video", Sam3TrackerVideoPropagator)], _propagate_round),
}
"""Per mode (agent.cli_names.SEGMENTATION_MODES, evals.bench_sam3's --mode): the SAM 3 adapters a round runs (role,
family and class), and how a round runs them."""


def _parameter_mb(models: list[torch.nn.Module]) -> tuple[float, float]:
    """MB of the parameters `models` hold together (a shared module counted once), and MB if each held its own."""
    held = {id(p): p.numel() * p.element_size() for m in models for p in m.parameters()}
    each = sum(p.numel() * p.element_size() for m in models for p in m.parameters())
    return round(sum(held.values()) / 1e6, 1), round(each / 1e6, 1)


def time_rounds(run: Round, rounds: int, device: str) -> tuple[list[float], list[Answer]]:
    """Seconds of each round, and every frame's answer in every round."""
    seconds, answers = [], []
    for r in range(rounds):
        start = time.perf_counter()
        answers += run(_threshold(r))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return seconds, answers


def compare_caches(
    registry: ModelRegistry,
    mode: str,
    frame_count: int,
    rounds: int,
    phrases: list[str],
    size: tuple[int, int],
    face: Face,
) -> dict[str, Any]:
    """`rounds` rounds of `mode` (a key of MODES) on `frame_count` frames of `size` (w, h) px, asking `phrases`: the
    uncached way, then the cached way, on adapters built once on `registry`; prints seconds per round and returns
    the summary (evals.bench_sam3's JSON line)."""
    start = time.perf_counter()
    adapters, round_of = MODES[mode]
    shared, ways = _ways(registry, face, adapters)
    build_s = round(time.perf_counter() - start, 2)
    params_mb, unshared_mb = _parameter_mb([adapter.model for adapter in shared])
    with tempfile.TemporaryDirectory(prefix="openavs-sam3-") as tmp:
        frames = write_frames(Path(tmp), frame_count, size)
        # Warm-up, outside both ways: first-call allocations, kernel choices.
        round_of(shared, frames[:1], phrases[:1])(_threshold(0))
        results = {
            name: time_rounds(round_of(way, frames, phrases), rounds, registry.device) for name, way in ways.items()
        }
    print(f"{'round':<7}" + "".join(f"{name:>12}" for name in ways))
    for r in range(rounds):
        print(f"{r:<7}" + "".join(f"{results[name][0][r]:>11.2f}s" for name in ways))
    totals = {name: sum(results[name][0]) for name in ways}
    return {
        "mode": mode,
        "face": face,
        "device": registry.device,
        "frames": frame_count,
        "rounds": rounds,
        "phrases": phrases,
        "size": list(size),
        "threads": torch.get_num_threads(),
        "uncached_s": round(totals["uncached"], 3),
        "cached_s": round(totals["cached"], 3),
        "speedup": round(totals["uncached"] / totals["cached"], 3),
        "rounds_s": {name: [round(s, 3) for s in results[name][0]] for name in ways},
        "vit_passes_uncached": ways["uncached"][0].vision_cache.passes,
        "vit_passes_cached": ways["cached"][0].vision_cache.passes,
        "cache_mb": round(ways["cached"][0].vision_cache.nbytes() / 1e6, 3),
        "parameters_mb": params_mb,
        "parameters_mb_without_sharing": unshared_mb,
        "instances": sum(len(answer) for answer in results["cached"][1]),
        "instances_equal": results["uncached"][1] == results["cached"][1],
        "build_s": build_s,
    }
