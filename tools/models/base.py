"""What every model role looks like from the tools: a spec naming the model, and one Protocol per role.

Adapters implement the Protocols; tools and graphs depend on the Protocols only, so scripted fakes can stand in.
Audio arrays are mono float32 in [-1, 1] at the adapter's `sampling_rate` (Hz); images are RGB PIL images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from tools.datamodel import Detections

Role = Literal[
    "captioner",
    "tagger",
    "grounder",
    "segmenter",
    "critic",
    "planner",
    "propagator",
    "text_segmenter",
    "video_segmenter",
]
Face = Literal["real", "tiny", "random"]
DType = Literal["auto", "float32", "float16", "bfloat16"]


class ModelSpec(BaseModel):
    """Which model fills a role.

    face: `real` loads trained weights by hub id or local path (what users run); `tiny` builds a small random
    model of the same architecture in-process, no files (tests, offline smoke runs); `random` builds the
    REAL-size architecture with random weights (cost measurements without downloads; outputs meaningless).
    family: the architecture adapter, e.g. "qwen2_audio", "clap", "grounding_dino", "sam2".
    compile: run the adapter's hot loop compiled where it has one (captioners: a static KV cache, whose decoding
    steps transformers compiles with torch.compile on a GPU). Same outputs; the first call pays the compilation.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Role
    family: str
    model_id: str
    face: Face = "real"
    dtype: DType = "auto"
    revision: str | None = None
    compile: bool = False

    @property
    def meaningful(self) -> bool:
        """False for random-weight faces, whose outputs say nothing about the clip."""
        return self.face == "real"


@dataclass(frozen=True)
class Usage:
    """Token counts of one model call (0 where the model has no tokens)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class CaptionBatch:
    """Captions for n windows x q queries: texts[i][j] answers query j on window i."""

    texts: list[list[str]]
    usage: Usage


@runtime_checkable
class AudioCaptioner(Protocol):
    """An audio-language model that answers text queries about audio windows."""

    spec: ModelSpec
    sampling_rate: int

    def describe(self, windows: np.ndarray, queries: Sequence[str], max_new_tokens: int = 48) -> CaptionBatch:
        """windows: float32 (n, samples) at `sampling_rate`; returns n x len(queries) answers."""
        ...


@runtime_checkable
class AudioTagger(Protocol):
    """Scores sound labels for audio windows (CLAP zero-shot over a vocabulary, or a fixed-label classifier)."""

    spec: ModelSpec
    sampling_rate: int

    def tag(self, windows: np.ndarray, vocabulary: Sequence[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        """windows: float32 (n, samples); returns per window the top_k (label, probability) pairs, best first.

        A tagger with a fixed label set (AST) ignores `vocabulary`.
        """
        ...


@runtime_checkable
class Grounder(Protocol):
    """Open-vocabulary detector: text phrases -> boxes."""

    spec: ModelSpec

    def detect(
        self,
        images: Sequence[Image.Image],
        phrases: Sequence[Sequence[str]],
        frame_indices: Sequence[int],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]:
        """One Detections per image, boxes in that image's pixels, each labelled with one of its phrases."""
        ...


@runtime_checkable
class Segmenter(Protocol):
    """Promptable segmenter: boxes -> masks, one image at a time."""

    spec: ModelSpec

    def segment(self, image: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """boxes: float32 (N, 4) xyxy pixels of `image`; returns bool masks (N, H, W) at the image's size and
        float32 mask scores (N,). N = 0 gives empty arrays."""
        ...
