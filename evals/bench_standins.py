"""Bench-only stand-ins: scripted audio models (the audio-language model is 8B; the bench covers the vision path
and the framework), a metering wrapper around the grounder, and a captioner that first waits as for a GPU
(`WaitingCaptioner`, for bench_e2e on machines without one).

Random-weight GroundingDINO saturates: every one of its 900 queries scores ~1.0, so any threshold keeps them all.
`MeteredGrounder` keeps each frame's `top_k` boxes, as trained weights would find a few objects, so that SAM2 and the
outputs see realistic box counts; the naive path applies the same `cap_detections`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from tools.datamodel import Detections
from tools.models.base import CaptionBatch, Grounder, ModelSpec, Usage
from tools.translate import Translation

BENCH_CAPTION = "a dog is barking"
BENCH_TAGS = (("dog", 0.9),)
SAMPLING_RATE = 16000  # Hz; one rate for both stand-ins, so the clip's audio is decoded once


def standin_spec(role: str) -> ModelSpec:
    return ModelSpec(role=role, family="bench_standin", model_id=f"standin-{role}", face="tiny")


class StandInCaptioner:
    """Answers every query on every window with BENCH_CAPTION."""

    def __init__(self) -> None:
        self.spec = standin_spec("captioner")
        self.sampling_rate = SAMPLING_RATE

    def describe(self, windows: np.ndarray, queries: Sequence[str], max_new_tokens: int = 48) -> CaptionBatch:
        texts = [[BENCH_CAPTION for _ in queries] for _ in range(len(windows))]
        return CaptionBatch(texts=texts, usage=Usage())


class WaitingCaptioner:
    """A captioner that first waits `wait_s` seconds (the GIL released, as while a GPU computes), then answers as
    `captioner` does: on a machine without a GPU, the time an accelerator would spend captioning, which the frames
    decoding beside it can hide."""

    def __init__(self, captioner: Any, wait_s: float) -> None:
        self.captioner, self.wait_s = captioner, wait_s
        self.spec, self.sampling_rate = captioner.spec, captioner.sampling_rate

    def describe(self, windows: np.ndarray, queries: Sequence[str], max_new_tokens: int = 48) -> CaptionBatch:
        time.sleep(self.wait_s)
        return self.captioner.describe(windows, queries, max_new_tokens)


class StandInTagger:
    """Gives every window BENCH_TAGS."""

    def __init__(self) -> None:
        self.spec = standin_spec("tagger")
        self.sampling_rate = SAMPLING_RATE

    def tag(self, windows: np.ndarray, vocabulary: Sequence[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        return [list(BENCH_TAGS[:top_k]) for _ in range(len(windows))]


def cap_detections(detections: Detections, top_k: int) -> Detections:
    """The first `top_k` boxes (detect() sorts them by score, high to low, ties in query order)."""
    keep = np.arange(len(detections)) < top_k
    return detections.filter(keep)


class MeteredGrounder:
    """A Grounder that keeps `top_k` boxes per frame and adds up the seconds spent in `inner.detect` (model time:
    preprocessing, forward passes, post-processing)."""

    def __init__(self, inner: Grounder, top_k: int) -> None:
        self.inner = inner
        self.spec = inner.spec
        self.top_k = top_k
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        # model, processor, last_stats, ... read through (result.json's provenance reads `model.config`).
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def detect(
        self,
        images: Sequence[Image.Image],
        phrases: Sequence[Sequence[str]],
        frame_indices: Sequence[int],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]:
        start = time.perf_counter()
        found = self.inner.detect(images, phrases, frame_indices, box_threshold, text_threshold)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return [cap_detections(d, self.top_k) for d in found]


class FixedTranslator:
    """Answers every frame with the same phrases (random-weight captioners name nothing: see evals/bench_e2e.py)."""

    name = "fixed"

    def __init__(self, phrases: Sequence[str]) -> None:
        self.phrases = list(phrases)
        self.model_id = "bench-fixed"

    def translate(self, captions: Sequence[Sequence[str]], tags: Any = None) -> Translation:
        return Translation(phrases=[list(self.phrases) for _ in captions], translator=self.name, model_id=self.model_id)
