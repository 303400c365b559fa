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
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import numpy as np
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from graphs.context import RunContext
from graphs.result import build_result
from prompts.translate import PROMPT_VERSION
from tools.audio import describe_audio, tag_audio
from tools.cache import DiskCache, array_digest
from tools.datamodel import Detections, FrameMasks
from tools.frames import FrameRef, extract_frames, frame_refs_from_files
from tools.grounding import ground_frames
from tools.media import audio_rms_dbfs, decode_audio, probe_clip
from tools.models.base import AudioCaptioner, AudioTagger, Grounder, Segmenter
from tools.outputs import write_masks_folder, write_overlay
from tools.runfiles import read_json, write_json_atomic
from tools.sampling import parse_frame_strategy, select_timestamps
from tools.segmentation import segment_frames
from tools.translate import CallRecord, Translation, TranslationFailedError
from tools.vocabulary import TAG_VOCABULARY


def _merge(left: dict, right: dict) -> dict:
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
    timings_s: Annotated[dict[str, float], _merge]
    usage: Annotated[dict[str, dict[str, int]], _merge]


class _Stage:
    """A running node: `summary` collects the fields of its trace record; `elapsed_s()` reads its clock."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        self._start = time.perf_counter()
        self.seconds = 0.0

    def elapsed_s(self) -> float:
        return round(time.perf_counter() - self._start, 3)


@contextmanager
def _stage(ctx: RunContext, name: str) -> Iterator[_Stage]:
    """Trace one node as a `node` record carrying its summary and duration."""
    with ctx.tracer.span("node", name) as summary:
        stage = _Stage(summary)
        yield stage
        stage.seconds = summary["seconds"] = stage.elapsed_s()


def _frames(state: PipelineState) -> list[FrameRef]:
    return [FrameRef(**f) for f in state["frames"]]


def _audio_models(ctx: RunContext) -> tuple[AudioCaptioner | None, AudioTagger | None]:
    settings = ctx.settings
    if settings.oracle_phrases is not None:
        return None, None
    captioner = ctx.registry.get(settings.captioner) if settings.captioner else None
    tagger = ctx.registry.get(settings.tagger) if settings.tagger else None
    return captioner, tagger


def load(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Probe the clip, decode the sampled frames into work/frames and the audio into work/audio_<rate>.npy."""
    ctx = runtime.context
    settings = ctx.settings
    work = ctx.run_dir / "work"
    work.mkdir(parents=True, exist_ok=True)  # a frames source extracts nothing, so nothing else creates it
    warnings: list[str] = []
    with _stage(ctx, "load") as stage:
        summary = stage.summary
        source = state["source"]
        if source["kind"] == "video":
            info = probe_clip(source["path"])
            timestamps = select_timestamps(info, parse_frame_strategy(settings.frames), settings.max_frames)
            frames = extract_frames(source["path"], timestamps, work / "frames")
            clip = {**info.to_dict(), "name": Path(source["path"]).stem}
            audio_path = source["path"] if info.has_audio else None
        else:
            frames = frame_refs_from_files(source["frame_paths"], source["timestamps_s"])
            clip = {"name": source["name"], "path": None, "width": frames[0].width, "height": frames[0].height}
            audio_path = source["audio_path"]
        captioner, tagger = _audio_models(ctx)
        rates = sorted({m.sampling_rate for m in (captioner, tagger) if m is not None})
        audio: dict[str, Any] = {"files": {}, "rms_dbfs": None, "audible": False}
        if audio_path is None:
            warnings.append("the clip has no audio stream: nothing is audible, so no object is segmented")
        elif rates:
            decoded = decode_audio(audio_path, rates)
            for rate, samples in decoded.items():
                path = work / f"audio_{rate}.npy"
                np.save(path, samples.astype(np.float32))
                audio["files"][str(rate)] = str(path)
            level = audio_rms_dbfs(decoded[rates[0]])
            audio["rms_dbfs"] = None if level == float("-inf") else round(level, 1)
            audio["audible"] = level > settings.silence_dbfs
            if not audio["audible"]:
                warnings.append(
                    f"the audio is silent (below {settings.silence_dbfs} dBFS): nothing is audible, "
                    "so no object is segmented"
                )
        else:
            audio["audible"] = True  # oracle phrases: no audio model listens, the phrases stand for the audio
        summary.update(n_frames=len(frames), audible=audio["audible"], rms_dbfs=audio["rms_dbfs"])
        ctx.progress("load", f"{len(frames)} frames at {clip['width']}x{clip['height']}, audible={audio['audible']}")
    return {
        "clip": clip,
        "frames": [f.model_dump() for f in frames],
        "audio": audio,
        "warnings": warnings,
        "timings_s": {"load": stage.seconds},
    }


def describe(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Caption each frame's audio window with the audio-language model and tag it with the tagger."""
    ctx = runtime.context
    settings = ctx.settings
    timestamps = [f["timestamp_s"] for f in state["frames"]]
    n = len(timestamps)
    captions: list[list[str]] = [[] for _ in range(n)]
    tags: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0, "calls": 0}
    with _stage(ctx, "describe_audio") as stage:
        summary = stage.summary
        captioner, tagger = _audio_models(ctx)
        if state["audio"]["audible"] and captioner is not None:
            samples = np.load(state["audio"]["files"][str(captioner.sampling_rate)])
            key = DiskCache.key(
                model=settings.captioner.model_dump(mode="json"),
                queries=settings.queries,
                max_new_tokens=settings.caption_max_new_tokens,
                window=(settings.audio_window_s, settings.audio_anchor),
                timestamps=timestamps,
                audio=array_digest(samples),
            )
            cached = ctx.cache.get("captions", key) if ctx.cache else None
            with ctx.tracer.span("model_call", "captioner", model=settings.captioner.model_id) as call:
                if cached is None:
                    captions, caption_usage = describe_audio(
                        captioner,
                        samples,
                        timestamps,
                        settings.queries,
                        settings.audio_window_s,
                        settings.audio_anchor,
                        settings.caption_max_new_tokens,
                    )
                    usage = {**caption_usage.__dict__, "calls": 1}
                    if ctx.cache:
                        ctx.cache.put("captions", key, {"captions": captions, "usage": usage})
                else:
                    captions, usage = cached["captions"], {"input_tokens": 0, "output_tokens": 0, "calls": 0}
                call.update(queries=list(settings.queries), captions=captions, cached=cached is not None, **usage)
        if state["audio"]["audible"] and tagger is not None:
            samples = np.load(state["audio"]["files"][str(tagger.sampling_rate)])
            with ctx.tracer.span("model_call", "tagger", model=settings.tagger.model_id) as call:
                tags = tag_audio(
                    tagger,
                    samples,
                    timestamps,
                    TAG_VOCABULARY,
                    settings.tag_top_k,
                    settings.audio_window_s,
                    settings.audio_anchor,
                )
                call.update(tags=tags)
        summary.update(captions=captions, tags=tags)
        first = captions[0][0] if captions and captions[0] else "-"
        ctx.progress("describe_audio", f"{sum(map(len, captions))} captions, first: {first[:80]!r}")
    return {
        "captions": captions,
        "tags": [[(label, round(float(score), 4)) for label, score in frame] for frame in tags],
        "timings_s": {"describe_audio": stage.seconds},
        "usage": {"captioner": usage},
    }


def translate(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Turn the captions (and tags) into per-frame noun phrases of the sounding objects."""
    ctx = runtime.context
    settings = ctx.settings
    n = len(state["frames"])
    warnings: list[str] = []
    usage = {"input_tokens": 0, "output_tokens": 0, "calls": 0}
    with _stage(ctx, "translate") as stage:
        summary = stage.summary
        if settings.oracle_phrases is not None:
            phrases = [list(settings.oracle_phrases) for _ in range(n)]
            info: dict[str, Any] = {"name": "oracle", "phrases": list(settings.oracle_phrases)}
        elif not state["audio"]["audible"]:
            phrases = [[] for _ in range(n)]
            info = {"name": "skipped", "reason": "nothing audible"}
        else:
            translation, usage = _translate(ctx, state["captions"], state["tags"] or None)
            phrases = translation.phrases
            warnings.extend(translation.warnings)
            info = {
                "name": translation.translator,
                "model": translation.model_id,
                "variant": translation.variant,
                "prompt_version": translation.prompt_version,
            }
        summary.update(phrases=phrases, translator=info)
        ctx.progress("translate", f"{info['name']}: {_phrases_line(phrases)}")
    return {
        "phrases": phrases,
        "translator": info,
        "warnings": warnings,
        "timings_s": {"translate": stage.seconds},
        "usage": {"translator": usage},
    }


def _translate(
    ctx: RunContext, captions: list[list[str]], tags: list[list[tuple[str, float]]] | None
) -> tuple[Translation, dict[str, int]]:
    """Translate through the cache when the translator is an LLM (the built-in lexicon is cheaper than a lookup)."""
    settings = ctx.settings
    use_cache = ctx.cache is not None and settings.translator == "llm"
    key = DiskCache.key(
        llm=settings.llm.model_dump(mode="json") if settings.llm else None,
        translator=ctx.translator.name,
        variant=settings.translate_variant,
        prompt=PROMPT_VERSION,
        captions=captions,
        tags=tags,
    )
    cached = ctx.cache.get("translations", key) if use_cache else None
    if cached is not None:
        ctx.tracer.emit("cache_hit", "translator", key=key)
        return Translation.model_validate(cached), {"input_tokens": 0, "output_tokens": 0, "calls": 0}
    try:
        translation = ctx.translator.translate(captions, tags)
    except TranslationFailedError as err:
        _trace_llm_calls(ctx, err.calls)
        raise
    if use_cache:
        ctx.cache.put("translations", key, translation.model_dump(mode="json"))
    return translation, _trace_llm_calls(ctx, translation.calls)


def _trace_llm_calls(ctx: RunContext, calls: list[CallRecord]) -> dict[str, int]:
    """One llm_call trace record per call (rendered messages, response, tokens); returns the summed usage."""
    usage = {"input_tokens": 0, "output_tokens": 0, "calls": len(calls)}
    for call in calls:
        ctx.tracer.emit("llm_call", "translator", call.ms, **call.model_dump(exclude={"ms"}))
        usage["input_tokens"] += call.input_tokens
        usage["output_tokens"] += call.output_tokens
    return usage


def _phrases_line(phrases: list[list[str]]) -> str:
    return " | ".join(", ".join(p) or "-" for p in phrases)


def ground(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Find boxes for each frame's phrases with the grounder."""
    ctx = runtime.context
    settings = ctx.settings
    with _stage(ctx, "ground") as stage:
        summary = stage.summary
        grounder: Grounder = ctx.registry.get(settings.grounder)
        detections = ground_frames(
            grounder,
            _frames(state),
            state["phrases"],
            settings.box_threshold,
            settings.text_threshold,
            settings.model_max_side,
        )
        dicts = [d.to_dict() for d in detections]
        summary.update(detections=dicts)
        ctx.progress("ground", f"{sum(map(len, detections))} boxes over {len(detections)} frames")
    return {"detections": dicts, "timings_s": {"ground": stage.seconds}}


def segment(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Turn every box into a mask, frame by frame; masks go to work/masks.json as COCO RLE."""
    ctx = runtime.context
    with _stage(ctx, "segment") as stage:
        summary = stage.summary
        segmenter: Segmenter = ctx.registry.get(ctx.settings.segmenter)
        detections = [Detections.from_dict(d) for d in state["detections"]]
        frames = _frames(state)
        masks = [m.to_dict() for m in segment_frames(segmenter, frames, detections, ctx.settings.model_max_side)]
        masks_file = ctx.run_dir / "work" / "masks.json"
        write_json_atomic(masks_file, masks)
        areas = [m["union_area"] for m in masks]
        summary.update(union_areas=areas)
        ctx.progress("segment", f"mask areas (px): {areas}")
    return {"masks_file": str(masks_file), "timings_s": {"segment": stage.seconds}}


def emit(state: PipelineState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Write masks/, overlay.mp4 and, last, result.json (whose presence marks a complete run)."""
    ctx = runtime.context
    with _stage(ctx, "emit") as stage:
        summary = stage.summary
        masks = [FrameMasks.from_dict(m) for m in read_json(state["masks_file"])]
        frames = _frames(state)
        mask_files = write_masks_folder(ctx.run_dir / "masks", state["clip"]["name"], masks)
        outputs = {"masks": str(ctx.run_dir / "masks"), "result": str(ctx.run_dir / "result.json")}
        if ctx.settings.write_overlay:
            duration = state["clip"].get("duration_s") or frames[-1].timestamp_s + ctx.settings.audio_window_s
            audio_source = (
                state["source"]["path"] if state["source"]["kind"] == "video" else state["source"]["audio_path"]
            )
            if not state["clip"].get("has_audio", audio_source is not None):
                audio_source = None
            write_overlay(ctx.run_dir / "overlay.mp4", frames, masks, duration, audio_source)
            outputs["overlay"] = str(ctx.run_dir / "overlay.mp4")
        outputs["trace"] = str(ctx.tracer.path) if ctx.tracer.path else ""
        summary.update(mask_files=len(mask_files))
        timings = {**state.get("timings_s", {}), "emit": stage.elapsed_s()}
        result = build_result(ctx, {**state, "timings_s": timings}, masks, outputs)
        write_json_atomic(ctx.run_dir / "result.json", result)
        ctx.progress("emit", f"{len(mask_files)} masks, result.json{', overlay.mp4' if 'overlay' in outputs else ''}")
    return {"outputs": outputs, "timings_s": {"emit": stage.seconds}}


def build_pipeline() -> StateGraph:
    """The uncompiled pipeline graph; compile it with a checkpointer to run."""
    graph = StateGraph(PipelineState, context_schema=RunContext)
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
