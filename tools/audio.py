"""Audio tools: describe each frame's audio window with an audio-language model, and tag it with a tagger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from tools.models.base import AudioCaptioner, AudioTagger, Usage
from tools.sampling import audio_windows


def describe_audio(
    captioner: AudioCaptioner,
    samples: np.ndarray,
    timestamps_s: Sequence[float],
    queries: Sequence[str],
    window_s: float,
    anchor: Literal["end", "center", "start"],
    max_new_tokens: int,
) -> tuple[list[list[str]], Usage]:
    """Captions per frame: for frame i, the answers to every query on its audio window.

    samples: mono float32 at `captioner.sampling_rate`. Returns (frames x queries texts, token usage).
    """
    windows = audio_windows(samples, captioner.sampling_rate, timestamps_s, window_s=window_s, anchor=anchor)
    batch = captioner.describe(windows, list(queries), max_new_tokens=max_new_tokens)
    return batch.texts, batch.usage


def tag_audio(
    tagger: AudioTagger,
    samples: np.ndarray,
    timestamps_s: Sequence[float],
    vocabulary: Sequence[str],
    top_k: int,
    window_s: float,
    anchor: Literal["end", "center", "start"],
) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per frame for the frame's audio window; samples at `tagger.sampling_rate`."""
    windows = audio_windows(samples, tagger.sampling_rate, timestamps_s, window_s=window_s, anchor=anchor)
    return tagger.tag(windows, vocabulary, top_k=top_k)
