"""The paper's fixed pipeline as a LangGraph StateGraph: load -> describe_audio -> decode_frames -> translate ->
ground -> segment -> emit.

load probes the clip, chooses the sampled times, starts decoding the frames at those times on a background thread
and decodes the audio; describe_audio then listens while the frames decode, and decode_frames takes them (or
decodes them, in a resumed run). Describing the audio needs no picture, and on a GPU decoding the frames of a
1280x720 clip takes about half as long as captioning. The audio models stay on the graph's thread: torch records
CUDA graphs per thread, and CPU thread pools are per thread too.

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
    loaded_frames,
    read_masks,
    sampled_times,
    segment_detections,
    start_loading,
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
    timestamps_s: list[float]
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
    """Probe the clip, choose the sampled times, start decoding their frames and decode the audio into the run
    folder."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "load") as stage:
        loaded = start_loading(ctx, state["source"])
        audio, n = loaded["audio"], len(loaded["timestamps_s"])
        stage.summary.update(n_frames=n, audible=audio["audible"], rms_dbfs=audio["rms_dbfs"])
        ctx.progress("load", f"{n} frames to sample, audible={audio['audible']}")
    return {**loaded, "timings_s": {"load": stage.seconds}}


def decode(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The frames at the sampled times, in the run folder: those the loading node (load, or the agent's prepare)
    started decoding (the node's time is the wait for them), or decoded now."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "decode_frames") as stage:
        frames = loaded_frames(ctx, state["source"], sampled_times(state))
        stage.summary.update(n_frames=len(frames))
        clip = state["clip"]
        ctx.progress("decode_frames", f"{len(frames)} frames at {clip['width']}x{clip['height']}")
    return {"frames": frames, "timings_s": {"decode_frames": stage.seconds}}


def describe(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Caption each frame's audio window with the audio-language model and tag it with the tagger."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "describe_audio") as stage:
        times = sampled_times(state)
        captions, usage = caption_audio(ctx, times, state["audio"])
        tags = tag_frames(ctx, times, state["audio"])
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
    graph.add_node("decode_frames", decode)
    graph.add_node("translate", translate)
    graph.add_node("ground", ground)
    graph.add_node("segment", segment)
    graph.add_node("emit", emit)
    graph.add_edge(START, "load")
    graph.add_edge("load", "describe_audio")
    graph.add_edge("describe_audio", "decode_frames")
    graph.add_edge("decode_frames", "translate")
    graph.add_edge("translate", "ground")
    graph.add_edge("ground", "segment")
    graph.add_edge("segment", "emit")
    graph.add_edge("emit", END)
    return graph
