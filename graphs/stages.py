"""The work of each OpenAVS stage over handles, shared by the fixed pipeline's nodes and the agent's tools.

Each function takes the run context and plain data (frame handles, captions, phrases, detection dicts), writes any
arrays into the run folder's work/ directory, traces its model calls, and returns plain data for graph state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from graphs.context import RunContext
from prompts.translate import PROMPT_VERSION
from tools.audio import describe_audio, tag_audio
from tools.cache import DiskCache, array_digest
from tools.datamodel import Detections, FrameMasks
from tools.embedding_cache import with_detection_cache, with_embedding_cache
from tools.errors import InputError
from tools.frames import FrameRef, extract_frames, frame_refs_from_files
from tools.grounding import ground_frames
from tools.media import audio_rms_dbfs, decode_audio, probe_clip
from tools.models.base import AudioCaptioner, AudioTagger, Segmenter
from tools.propagation import best_seed_frame, drift_frames, propagate_detections
from tools.runfiles import read_json, write_json_atomic
from tools.sampling import parse_frame_strategy, select_timestamps
from tools.segmentation import segment_frames
from tools.translate import CallRecord, Translation, TranslationFailedError
from tools.vocabulary import TAG_VOCABULARY

NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "calls": 0}


def frame_refs(frames: list[dict[str, Any]]) -> list[FrameRef]:
    return [FrameRef(**f) for f in frames]


def audio_models(ctx: RunContext) -> tuple[AudioCaptioner | None, AudioTagger | None]:
    """The captioner and tagger this run listens with (none when oracle phrases stand in for the audio)."""
    settings = ctx.settings
    if settings.oracle_phrases is not None:
        return None, None
    captioner = ctx.registry.get(settings.captioner) if settings.captioner else None
    tagger = ctx.registry.get(settings.tagger) if settings.tagger else None
    return captioner, tagger


def load_clip(ctx: RunContext, source: dict[str, Any], frames_strategy: str | None = None) -> dict[str, Any]:
    """Probe the source, decode its sampled frames into work/frames and its audio into work/audio_<rate>.npy.

    Returns the state fields clip, frames (FrameRef dicts), audio ({files, rms_dbfs, audible}) and warnings.
    """
    settings = ctx.settings
    work = ctx.run_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    if source["kind"] == "video":
        info = probe_clip(source["path"])
        strategy = parse_frame_strategy(frames_strategy or settings.frames)
        timestamps = select_timestamps(info, strategy, settings.max_frames)
        frames = extract_frames(source["path"], timestamps, work / "frames")
        clip = {**info.to_dict(), "name": Path(source["path"]).stem}
        audio_path = source["path"] if info.has_audio else None
    else:
        frames = frame_refs_from_files(source["frame_paths"], source["timestamps_s"])
        clip = {"name": source["name"], "path": None, "width": frames[0].width, "height": frames[0].height}
        audio_path = source["audio_path"]
    captioner, tagger = audio_models(ctx)
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
                f"the audio is silent (below {settings.silence_dbfs} dBFS): "
                "nothing is audible, so no object is segmented"
            )
    else:
        audio["audible"] = True  # oracle phrases: no audio model listens, the phrases stand for the audio
    return {"clip": clip, "frames": [f.model_dump() for f in frames], "audio": audio, "warnings": warnings}


def caption_audio(
    ctx: RunContext, frames: list[dict[str, Any]], audio: dict[str, Any], queries: tuple[str, ...] | None = None
) -> tuple[list[list[str]], dict[str, int]]:
    """Captions per frame (frames x queries) from the captioner, through the cache; empty when nothing is audible."""
    settings = ctx.settings
    queries = queries or settings.queries
    captioner, _ = audio_models(ctx)
    if not audio["audible"] or captioner is None:
        return [[] for _ in frames], dict(NO_USAGE)
    timestamps = [f["timestamp_s"] for f in frames]
    samples = np.load(audio["files"][str(captioner.sampling_rate)])
    key = DiskCache.key(
        model=settings.captioner.model_dump(mode="json"),
        queries=queries,
        max_new_tokens=settings.caption_max_new_tokens,
        window=(settings.audio_window_s, settings.audio_anchor),
        timestamps=timestamps,
        audio=array_digest(samples),
    )
    cached = ctx.cache.get("captions", key) if ctx.cache else None
    with ctx.tracer.span("model_call", "captioner", model=settings.captioner.model_id, queries=list(queries)) as call:
        if cached is None:
            captions, usage_counts = describe_audio(
                captioner,
                samples,
                timestamps,
                queries,
                settings.audio_window_s,
                settings.audio_anchor,
                settings.caption_max_new_tokens,
            )
            usage = {**usage_counts.__dict__, "calls": 1}
            if ctx.cache:
                ctx.cache.put("captions", key, {"captions": captions, "usage": usage})
        else:
            captions, usage = cached["captions"], dict(NO_USAGE)
        call.update(captions=captions, cached=cached is not None, **usage)
    return captions, usage


def tag_frames(ctx: RunContext, frames: list[dict[str, Any]], audio: dict[str, Any]) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per frame from the tagger; empty when nothing is audible or no tagger is set."""
    settings = ctx.settings
    _, tagger = audio_models(ctx)
    if not audio["audible"] or tagger is None:
        return [[] for _ in frames]
    samples = np.load(audio["files"][str(tagger.sampling_rate)])
    timestamps = [f["timestamp_s"] for f in frames]
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
        tags = [[(label, round(float(score), 4)) for label, score in frame] for frame in tags]
        call.update(tags=tags)
    return tags


def translate_captions(
    ctx: RunContext, captions: list[list[str]], tags: list[list[tuple[str, float]]] | None
) -> tuple[Translation, dict[str, int]]:
    """Phrases per frame from the configured translator; LLM answers go through the cache (the built-in lexicon is
    cheaper than a lookup). Every LLM call is traced, including the failed attempts of a translation that fails."""
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
        return Translation.model_validate(cached), dict(NO_USAGE)
    try:
        translation = ctx.translator.translate(captions, tags)
    except TranslationFailedError as err:
        trace_llm_calls(ctx, "translator", err.calls)
        raise
    if use_cache:
        ctx.cache.put("translations", key, translation.model_dump(mode="json"))
    return translation, trace_llm_calls(ctx, "translator", translation.calls)


def trace_llm_calls(ctx: RunContext, name: str, calls: list[CallRecord], **fields: Any) -> dict[str, int]:
    """One llm_call trace record per call (rendered messages, response, tokens); returns the summed usage."""
    usage = {"input_tokens": 0, "output_tokens": 0, "calls": len(calls)}
    for call in calls:
        ctx.tracer.emit("llm_call", name, call.ms, **call.model_dump(exclude={"ms"}), **fields)
        usage["input_tokens"] += call.input_tokens
        usage["output_tokens"] += call.output_tokens
    return usage


def ground_phrases(
    ctx: RunContext,
    frames: list[dict[str, Any]],
    phrases: list[list[str]],
    box_threshold: float,
    text_threshold: float,
) -> list[dict[str, Any]]:
    """Detections (as dicts) per frame for its phrases, in original pixels."""
    # Raw detector outputs are kept per (picture, caption): a refine round that only changes thresholds reuses them.
    grounder = with_detection_cache(ctx.registry.get(ctx.settings.grounder))
    detections = ground_frames(
        grounder, frame_refs(frames), phrases, box_threshold, text_threshold, ctx.settings.model_max_side
    )
    return [d.to_dict() for d in detections]


def segment_detections(
    ctx: RunContext, frames: list[dict[str, Any]], detections: list[dict[str, Any]], masks_file: Path
) -> list[dict[str, Any]]:
    """Masks for every detection, written to `masks_file` as FrameMasks dicts (COCO RLE); returns the dicts.

    Image mode segments every frame on its own (the paper); propagate mode tracks the best-grounded frame's
    objects through the clip with SAM2's video model and re-segments, from their own boxes, the frames where the
    track drifted (an object vanished, a full-frame mask, a jumping area).
    """
    refs = frame_refs(frames)
    dets = [Detections.from_dict(d) for d in detections]
    if ctx.settings.segmentation == "propagate":
        masks = _propagated_masks(ctx, refs, dets)
    else:
        masks = list(segment_frames(image_segmenter(ctx), refs, dets, ctx.settings.model_max_side))
    dicts = [m.to_dict() for m in masks]
    write_json_atomic(masks_file, dicts)
    return dicts


def image_segmenter(ctx: RunContext) -> Segmenter:
    """The run's image segmenter, with its image embeddings kept across refine rounds when it can reuse them."""
    if ctx.segmenter is None:
        segmenter = ctx.registry.get(ctx.settings.segmenter)
        capacity = ctx.settings.embedding_cache
        ctx.segmenter = with_embedding_cache(segmenter, capacity) if capacity else segmenter
    return ctx.segmenter


def _propagated_masks(ctx: RunContext, refs: list[FrameRef], dets: list[Detections]) -> list[FrameMasks]:
    settings = ctx.settings
    seed_index = best_seed_frame(dets)
    if seed_index is None:
        return [FrameMasks(ref.index, ref.height, ref.width) for ref in refs]
    if settings.propagator is None:
        raise InputError("segmentation 'propagate' needs a propagator model (a SAM2 video model)")
    seed = next(d for d in dets if d.frame_index == seed_index)
    with ctx.tracer.span("model_call", "propagator", model=settings.propagator.model_id, seed_frame=seed_index) as call:
        tracked = propagate_detections(ctx.registry.get(settings.propagator), refs, seed, settings.model_max_side)
        by_index = {m.frame_index: m for m in tracked}
        masks = [by_index[ref.index] for ref in refs]
        # Re-check after each repair: an area "jump" next to a vanished object is gone once the object is back.
        regrounded: list[int] = []
        while drifted := [k for k in drift_frames(masks) if len(dets[k]) and k not in regrounded and k != seed_index]:
            k = drifted[0]
            [masks[k]] = segment_frames(image_segmenter(ctx), [refs[k]], [dets[k]], settings.model_max_side)
            regrounded.append(k)
        call.update(frames=len(refs), regrounded=sorted(regrounded))
    return masks


def read_masks(masks_file: str | Path) -> list[FrameMasks]:
    return [FrameMasks.from_dict(m) for m in read_json(masks_file)]
