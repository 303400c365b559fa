"""The paper's fixed pipeline as a LangGraph StateGraph: load -> describe_audio -> translate -> ground -> segment
-> emit.

State holds handles and small summaries only (frame paths, captions, phrases, boxes, the path of the masks file);
arrays live in the run folder's work/ directory, models live in the runtime context. Each node's output is
checkpointed, so an interrupted run resumes at the first unfinished node.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from graphs.context import RunContext, run_context
from graphs.result import write_outputs
from graphs.stages import (
    NO_USAGE,
    caption_audio,
    ground_phrases,
    load_clip,
    read_masks,
    segment_detections,
    tag_frames,
    translate_captions,
)


def merge_dicts(left: dict, right: dict) -> dict:
    return {**left, **right}


class VideoSource(TypedDict):
    kind: Literal["video"]
    path: str


class FramesSource(TypedDict):
    """Frames already extracted (AVSBench layout): image files with their times, and the clip's audio file."""

    kind: Literal["frames"]
    name: str
    frame_paths: list[str]
    timestamps_s: list[float]
    audio_path: str | None


class PipelineState(TypedDict, total=False):
    source: VideoSource | FramesSource
    clip: dict[str, Any]
    frames: list[dict[str, Any]]
    audio: dict[str, Any]
    captions: list[list[str]]
    tags: list[list[tuple[str, float]]]
    phrases: list[list[str]]
    translator: dict[str, Any]
    detections: list[dict[str, Any]]
    masks_file: str
    outputs: dict[str, str]
    warnings: Annotated[list[str], operator.add]
    timings_s: Annotated[dict[str, float], merge_dicts]
    usage: Annotated[dict[str, dict[str, int]], merge_dicts]


class Stage:
    """A running node or tool: `summary` collects the fields of its trace record; `elapsed_s()` reads its clock."""

    def __init__(self, name: str, summary: dict[str, Any]) -> None:
        self.name = name
        self.summary = summary
        self._start = time.perf_counter()
        self.seconds = 0.0

    def elapsed_s(self) -> float:
        return round(time.perf_counter() - self._start, 3)


@contextmanager
def traced_stage(ctx: RunContext, kind: str, name: str, **fields: Any) -> Iterator[Stage]:
    """Trace one node (or tool call) as a record carrying its summary and duration."""
    with ctx.tracer.span(kind, name, **fields) as summary:
        stage = Stage(name, summary)
        yield stage
        stage.seconds = summary["seconds"] = stage.elapsed_s()


def _phrases_line(phrases: list[list[str]]) -> str:
    return " | ".join(", ".join(p) or "-" for p in phrases)


def load(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Probe the clip, decode the sampled frames and the audio into the run folder."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "load") as stage:
        loaded = load_clip(ctx, state["source"])
        clip, audio = loaded["clip"], loaded["audio"]
        stage.summary.update(n_frames=len(loaded["frames"]), audible=audio["audible"], rms_dbfs=audio["rms_dbfs"])
        ctx.progress(
            "load", f"{len(loaded['frames'])} frames at {clip['width']}x{clip['height']}, audible={audio['audible']}"
        )
    return {**loaded, "timings_s": {"load": stage.seconds}}


def describe(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Caption each frame's audio window with the audio-language model and tag it with the tagger."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "describe_audio") as stage:
        captions, usage = caption_audio(ctx, state["frames"], state["audio"])
        tags = tag_frames(ctx, state["frames"], state["audio"])
        stage.summary.update(captions=captions, tags=tags)
        first = captions[0][0] if captions and captions[0] else "-"
        ctx.progress("describe_audio", f"{sum(map(len, captions))} captions, first: {first[:80]!r}")
    return {
        "captions": captions,
        "tags": tags,
        "timings_s": {"describe_audio": stage.seconds},
        "usage": {"captioner": usage},
    }


def translate(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Turn the captions (and tags) into per-frame noun phrases of the sounding objects."""
    ctx = run_context(runtime.context)
    settings = ctx.settings
    n = len(state["frames"])
    warnings: list[str] = []
    usage = dict(NO_USAGE)
    with traced_stage(ctx, "node", "translate") as stage:
        if settings.oracle_phrases is not None:
            phrases = [list(settings.oracle_phrases) for _ in range(n)]
            info: dict[str, Any] = {"name": "oracle", "phrases": list(settings.oracle_phrases)}
        elif not state["audio"]["audible"]:
            phrases = [[] for _ in range(n)]
            info = {"name": "skipped", "reason": "nothing audible"}
        else:
            translation, usage = translate_captions(ctx, state["captions"], state["tags"] or None)
            phrases = translation.phrases
            warnings.extend(translation.warnings)
            info = {
                "name": translation.translator,
                "model": translation.model_id,
                "variant": translation.variant,
                "prompt_version": translation.prompt_version,
            }
        stage.summary.update(phrases=phrases, translator=info)
        ctx.progress("translate", f"{info['name']}: {_phrases_line(phrases)}")
    return {
        "phrases": phrases,
        "translator": info,
        "warnings": warnings,
        "timings_s": {"translate": stage.seconds},
        "usage": {"translator": usage},
    }


def ground(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Find boxes for each frame's phrases with the grounder."""
    ctx = run_context(runtime.context)
    settings = ctx.settings
    with traced_stage(ctx, "node", "ground") as stage:
        detections = ground_phrases(
            ctx, state["frames"], state["phrases"], settings.box_threshold, settings.text_threshold
        )
        stage.summary.update(detections=detections)
        n_boxes = sum(len(d["phrases"]) for d in detections)
        n_deferred = sum(1 for d in detections if d.get("deferred"))
        deferred = f", {n_deferred} frames deferred to segmentation" if n_deferred else ""
        ctx.progress("ground", f"{n_boxes} boxes over {len(detections)} frames{deferred}")
    return {"detections": detections, "timings_s": {"ground": stage.seconds}}


def segment(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Turn every box into a mask, frame by frame; masks go to work/masks.json as COCO RLE."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "segment") as stage:
        masks_file = ctx.run_dir / "work" / "masks.json"
        masks = segment_detections(ctx, state["frames"], state["detections"], masks_file)
        areas = [m["union_area"] for m in masks]
        stage.summary.update(union_areas=areas)
        ctx.progress("segment", f"mask areas (px): {areas}")
    return {"masks_file": str(masks_file), "timings_s": {"segment": stage.seconds}}


def emit(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write masks/, overlay.mp4 and, last, result.json (whose presence marks a complete run)."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "emit") as stage:
        outputs = write_outputs(ctx, state, read_masks(state["masks_file"]), stage)
        stage.summary.update(outputs=outputs)
    return {"outputs": outputs, "timings_s": {"emit": stage.seconds}}


def build_pipeline(context_schema: type = RunContext) -> StateGraph:
    """The uncompiled pipeline graph; compile it with a checkpointer to run. `context_schema` is RunContext, or
    graphs.context.StudioContext for LangGraph servers (see agent/studio.py)."""
    graph = StateGraph(PipelineState, context_schema=context_schema)
    graph.add_node("load", load)
    graph.add_node("describe_audio", describe)
    graph.add_node("translate", translate)
    graph.add_node("ground", ground)
    graph.add_node("segment", segment)
    graph.add_node("emit", emit)
    graph.add_edge(START, "load")
    graph.add_edge("load", "describe_audio")
    graph.add_edge("describe_audio", "translate")
    graph.add_edge("translate", "ground")
    graph.add_edge("ground", "segment")
    graph.add_edge("segment", "emit")
    graph.add_edge("emit", END)
    return graph
