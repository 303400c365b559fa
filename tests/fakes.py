"""Scripted stand-ins for the model roles, for graph-logic tests: deterministic, instant, and easy to reason about.

Each fake satisfies its Protocol in tools/models/base.py and records how it was called.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from PIL import Image
from pydantic import Field

from tools.datamodel import Detections
from tools.models.base import CaptionBatch, ModelSpec, Usage


def fake_spec(role: str) -> ModelSpec:
    return ModelSpec(role=role, family="fake", model_id=f"fake-{role}", face="tiny")


class ScriptedCaptioner:
    """Answers every query on window i with captions[i] (the last caption repeats for extra windows)."""

    def __init__(self, captions: Sequence[str], sampling_rate: int = 16000) -> None:
        self.spec = fake_spec("captioner")
        self.sampling_rate = sampling_rate
        self.captions = list(captions)
        self.calls: list[tuple[int, int, list[str]]] = []

    def describe(self, windows: np.ndarray, queries: Sequence[str], max_new_tokens: int = 48) -> CaptionBatch:
        self.calls.append((windows.shape[0], windows.shape[1], list(queries)))
        texts = [[self.captions[min(i, len(self.captions) - 1)] for _ in queries] for i in range(len(windows))]
        return CaptionBatch(texts=texts, usage=Usage(input_tokens=10 * len(windows), output_tokens=5 * len(windows)))


class FrameWatchingCaptioner(ScriptedCaptioner):
    """Waits (up to `wait_s`) inside describe for the run's frames to be written, recording whether they were and on
    which thread it was called."""

    def __init__(self, captions: list[str], frames_dir: Path, n_frames: int, wait_s: float) -> None:
        super().__init__(captions)
        self.frames_dir, self.n_frames, self.wait_s = frames_dir, n_frames, wait_s
        self.saw_frames: bool | None = None
        self.thread: threading.Thread | None = None

    def describe(self, windows: np.ndarray, queries: Sequence[str], max_new_tokens: int = 48) -> CaptionBatch:
        self.thread = threading.current_thread()
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and len(list(self.frames_dir.glob("*.png"))) < self.n_frames:
            time.sleep(0.01)
        self.saw_frames = len(list(self.frames_dir.glob("*.png"))) == self.n_frames
        return super().describe(windows, queries, max_new_tokens)


class ScriptedTagger:
    """Gives every window the same scored labels."""

    def __init__(self, tags: Sequence[tuple[str, float]], sampling_rate: int = 48000) -> None:
        self.spec = fake_spec("tagger")
        self.sampling_rate = sampling_rate
        self.tags = list(tags)

    def tag(self, windows: np.ndarray, vocabulary: Sequence[str], top_k: int = 5) -> list[list[tuple[str, float]]]:
        return [self.tags[:top_k] for _ in range(len(windows))]


class BoxGrounder:
    """Finds each known phrase at a fixed box given in FRACTIONS of the image (x0, y0, x1, y1), with a score."""

    def __init__(self, boxes: dict[str, tuple[tuple[float, float, float, float], float]]) -> None:
        self.spec = fake_spec("grounder")
        self.boxes = boxes
        self.calls: list[tuple[list[tuple[int, int]], list[list[str]]]] = []
        self.frames_seen: list[int] = []

    def detect(
        self,
        images: Sequence[Image.Image],
        phrases: Sequence[Sequence[str]],
        frame_indices: Sequence[int],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]:
        self.calls.append(([im.size for im in images], [list(p) for p in phrases]))
        self.frames_seen.extend(frame_indices)
        out = []
        for image, frame_phrases, index in zip(images, phrases, frame_indices, strict=True):
            found = [
                (p, *self.boxes[p]) for p in frame_phrases if p in self.boxes and self.boxes[p][1] >= box_threshold
            ]
            w, h = image.size
            boxes = [[x0 * w, y0 * h, x1 * w, y1 * h] for _, (x0, y0, x1, y1), _ in found]
            out.append(
                Detections(index, np.array(boxes).reshape(-1, 4), [s for *_, s in found], [p for p, *_ in found])
            )
        return out


class BoxSegmenter:
    """The mask of a box is the box itself, filled, at the image's size."""

    def __init__(self) -> None:
        self.spec = fake_spec("segmenter")
        self.sizes: list[tuple[int, int]] = []

    def segment(self, image: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w, h = image.size
        self.sizes.append((w, h))
        masks = np.zeros((len(boxes), h, w), dtype=bool)
        for mask, (x0, y0, x1, y1) in zip(masks, np.asarray(boxes).reshape(-1, 4), strict=True):
            mask[round(y0) : round(y1), round(x0) : round(x1)] = True
        return masks, np.full(len(boxes), 0.9, np.float32)


def box_mask(height: int, width: int, box: tuple[float, float, float, float]) -> np.ndarray:
    """The bool mask BoxGrounder + BoxSegmenter produce for a fractional box on a (height, width) frame."""
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), dtype=bool)
    mask[round(y0 * height) : round(y1 * height), round(x0 * width) : round(x1 * width)] = True
    return mask


class ScriptedChatModel(BaseChatModel):
    """A chat model that answers with scripted AIMessages in order and records what it was shown.

    langchain-core's fake chat models do not support bind_tools; this one binds by returning itself.
    """

    script: list[AIMessage]
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any) -> ChatResult:
        self.seen.append(list(messages))
        if not self.script:
            raise RuntimeError("the scripted chat model ran out of answers")
        return ChatResult(generations=[ChatGeneration(message=self.script.pop(0))])


def tool_call(name: str, **args: Any) -> AIMessage:
    """An AIMessage that calls one tool."""
    return AIMessage(
        content=f"calling {name}", tool_calls=[{"name": name, "args": args, "id": f"call_{name}_{id(args)}"}]
    )


class ScriptedTracker:
    """Tracks the seed boxes perfectly, except that the object vanishes on `lost_frame` (a drift)."""

    def __init__(self, lost_frame: int) -> None:
        self.spec = fake_spec("propagator")
        self.lost_frame = lost_frame
        self.seeds: list[int] = []

    def propagate(self, frames, seed_frame, boxes, obj_ids, max_side=None):
        self.seeds.append(seed_frame)
        for ref in frames:
            masks = np.zeros((len(boxes), ref.height, ref.width), bool)
            if ref.index != self.lost_frame:
                for mask, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
                    mask[round(y0) : round(y1), round(x0) : round(x1)] = True
            yield ref.index, masks, np.full(len(boxes), 0.9, np.float32)
