"""What a graph run needs besides its state: settings (plain data, saved with the run) and the runtime context
(models, translator, run folder, trace), which never enters checkpoints."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

from tools.cache import DiskCache
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry
from tools.overlay_memo import OverlayMemo
from tools.parallel import Prefetcher
from tools.tracing import TraceWriter
from tools.translate import Translator

PAPER_QUERIES = ("generate audio caption", "generate metadata", "this is a sound of")
"""Pengi's three describe() queries, the ones the paper runs per frame (PAPER.md §1)."""


class LLMSettings(BaseModel):
    """An OpenAI-compatible chat model; the key comes from the environment and is never saved."""

    model_config = ConfigDict(extra="forbid")

    model: str
    base_url: str | None = None
    temperature: float = 0.0
    timeout_s: float = 60.0
    max_retries: int = 2


class PipelineSettings(BaseModel):
    """Every choice a run makes, resolved from a profile plus command-line overrides; saved in result.json."""

    model_config = ConfigDict(extra="forbid")

    profile: str
    captioner: ModelSpec | None = Field(description="audio-language model; None skips captioning")
    queries: tuple[str, ...] = PAPER_QUERIES
    caption_max_new_tokens: int = 48
    tagger: ModelSpec | None = Field(description="audio tagger; None skips tagging")
    tag_top_k: int = 5
    translator: Literal["llm", "lexicon"] = "lexicon"
    llm: LLMSettings | None = None
    translate_variant: Literal["none", "prompt", "frame", "both"] = "both"
    lexicon_min_tag_score: float = 0.3
    oracle_phrases: tuple[str, ...] | None = Field(
        default=None, description="fixed phrases for every frame (the paper's OpenAVS*): no ALM, tagger or LLM"
    )
    grounder: ModelSpec
    segmenter: ModelSpec
    box_threshold: float = Field(0.25, ge=0.0, le=1.0)
    text_threshold: float = Field(0.25, ge=0.0, le=1.0)
    frames: str = "avsbench"
    max_frames: int = Field(64, ge=1)
    model_max_side: int = Field(1280, ge=64, description="frames larger than this are downscaled for the models")
    audio_window_s: float = Field(1.0, gt=0.0)
    audio_anchor: Literal["end", "center", "start"] = "end"
    silence_dbfs: float = -60.0
    device: str | None = None
    write_overlay: bool = True
    decode_ahead: bool = Field(
        True, description="decode the sampled frames on a background thread while the audio is described"
    )
    segmentation: Literal["image", "propagate", "video"] = Field(
        "image",
        description="image: every frame on its own (the paper); propagate: video tracking (SAM2 video or SAM 3's "
        "tracker) from the best-grounded frame, forward and backward, re-grounding frames where the track drifts; "
        "video: a text-prompted video model (SAM 3's) detects and tracks the phrases on every frame",
    )
    propagator: ModelSpec | None = Field(
        default=None, description="video tracker for segmentation=propagate (SAM2 video, SAM 3's tracker)"
    )
    video_segmenter: ModelSpec | None = Field(
        default=None, description="text-prompted video model for segmentation=video (SAM 3's Sam3VideoModel)"
    )
    seed_frames: int = Field(
        3,
        ge=0,
        description="propagate mode: frames grounded to choose the seed, evenly spaced over the frames with phrases "
        "(first and last included); the others are grounded only where the track drifts. 0: ground every frame",
    )
    embedding_cache: int = Field(
        16,
        ge=0,
        description="frames whose image embeddings are kept across refine rounds (0: off); one SAM2 embedding at "
        "1024 px is about 17 MB, so the default bounds the cache near 270 MB",
    )

    def model_specs(self) -> list[ModelSpec]:
        """The models this run will load, in pipeline order."""
        needs_audio_models = self.oracle_phrases is None
        specs = [self.captioner, self.tagger] if needs_audio_models else []
        if self.segmentation == "video":  # the video model grounds and segments: the image models are not loaded
            vision = [self.video_segmenter]
        else:
            vision = [self.grounder, self.segmenter, *([self.propagator] if self.segmentation == "propagate" else [])]
        return [s for s in [*specs, *vision] if s is not None]

    @property
    def meaningful(self) -> bool:
        """False when any model has random weights: the masks then say nothing about the clip."""
        return all(spec.meaningful for spec in self.model_specs())


def _print_progress(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", file=sys.stderr, flush=True)


@dataclass
class RunContext:
    """Runtime context of one run: not checkpointed, rebuilt on resume."""

    settings: PipelineSettings
    registry: ModelRegistry
    translator: Translator | None
    run_dir: Path
    tracer: TraceWriter
    cache: DiskCache | None = None
    progress: Callable[[str, str], None] = field(default=_print_progress)
    planner: Any = None
    """Agent only: the LLM planner (graphs.planners.ChatPlanner) when settings.planner is "llm"."""
    critic: Any = None
    """Agent only: the critic (tools.critic.Critic) that checks masks."""
    segmenter: Any = None
    """The image segmenter wrapped with this run's embedding cache, made on first use (graphs.stages)."""
    prefetch: Prefetcher = field(default_factory=Prefetcher)
    """Work started ahead of the node that takes its result (the sampled frames, while the audio is described)."""
    overlays: OverlayMemo = field(default_factory=OverlayMemo)
    """The round overlays drawn so far, so a round showing the same masks copies them (graphs.stages)."""
    started_at: float = field(default_factory=time.monotonic)
    """When this invocation started (monotonic s), for the wall-clock deadline."""


class AgentSettings(PipelineSettings):
    """The pipeline's settings plus the agent's: planner, critic and budgets."""

    planner: Literal["builtin", "llm"] = "builtin"
    planner_model: ModelSpec | None = Field(
        default=None, description="the LLM planner as a local transformers chat model; None: the OpenAI-compatible llm"
    )
    critic: ModelSpec | None = Field(default=None, description="VLM critic through transformers; None: checks only")
    critic_llm: LLMSettings | None = Field(default=None, description="OpenAI-compatible vision model as the critic")
    critic_max_images: int = Field(4, ge=1, le=16)
    max_rounds: int = Field(3, ge=1, description="ground -> segment -> critique rounds, the first included")
    max_tool_calls: int = Field(40, ge=1)
    deadline_s: float = Field(1800.0, gt=0, description="wall-clock budget of one invocation")
    recursion_limit: int = Field(200, ge=10)

    def model_specs(self) -> list[ModelSpec]:
        local_planner = self.planner_model if self.planner == "llm" else None
        return [*super().model_specs(), *(spec for spec in (self.critic, local_planner) if spec is not None)]


class StudioContext(TypedDict, total=False):
    """The JSON context a LangGraph server passes (it cannot pass models): the profile, device and round budget."""

    profile: str
    device: str
    max_rounds: int


ContextFactory = Callable[[dict[str, Any]], RunContext]
_context_factory: ContextFactory | None = None


def set_context_factory(factory: ContextFactory) -> None:
    """Register how a JSON context becomes a RunContext (the application layer does, for LangGraph servers)."""
    global _context_factory
    _context_factory = factory


def run_context(context: RunContext | dict[str, Any] | None) -> RunContext:
    """The node's RunContext: as given by agent.runner, or built from a server's JSON context by the factory."""
    if isinstance(context, RunContext):
        return context
    if _context_factory is None:
        raise RuntimeError("graph run without a RunContext: run it through agent.runner or agent.studio")
    return _context_factory(dict(context or {}))
