"""The work of each OpenAVS stage over handles, shared by the fixed pipeline's nodes and the agent's tools.

Each function takes the run context and plain data (frame handles, captions, phrases, detection dicts), writes any
arrays into the run folder's work/ directory, traces its model calls, and returns plain data for graph state.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
from PIL import Image

from graphs.context import RunContext
from prompts.translate import PROMPT_VERSION
from tools.audio import describe_audio, tag_audio
from tools.cache import DiskCache, array_digest
from tools.datamodel import Detections, FrameMasks, ObjectMask, frame_number
from tools.embedding_cache import with_detection_cache, with_embedding_cache
from tools.errors import InputError
from tools.frames import WORK_PNG_LEVEL, FrameRef, extract_frames, frame_refs_from_files, load_frame
from tools.grounding import ground_frames
from tools.media import audio_rms_dbfs, decode_audio, probe_clip
from tools.models.base import AudioCaptioner, AudioTagger, Segmenter
from tools.overlay import render_overlay
from tools.overlay_memo import overlay_key
from tools.parallel import for_each_in_threads
from tools.propagation import (
    MemoizedPropagator,
    best_seed_frame,
    drift_frames,
    match_ids_by_overlap,
    propagate_detections,
    seed_candidates,
)
from tools.runfiles import read_json, write_json_atomic
from tools.sampling import parse_frame_strategy, select_timestamps
from tools.segmentation import segment_frames
from tools.translate import CallRecord, Translation, TranslationFailedError
from tools.video_segmentation import segment_video
from tools.vocabulary import TAG_VOCABULARY

NO_USAGE = {"input_tokens": 0, "output_tokens": 0, "calls": 0}


def frame_refs(frames: list[dict[str, Any]]) -> list[FrameRef]:
    return [FrameRef(**f) for f in frames]


def sampled_times(state: Mapping[str, Any]) -> list[float]:
    """The sampled time (s) of each of the run's frames, where its audio window is cut: state's timestamps_s, known
    before the frames decode (runs and conversations saved by older versions hold only the frame handles)."""
    if "timestamps_s" in state:
        return list(state["timestamps_s"])
    return [f["timestamp_s"] for f in state["frames"]]


def audio_models(ctx: RunContext) -> tuple[AudioCaptioner | None, AudioTagger | None]:
    """The captioner and tagger this run listens with (none when oracle phrases stand in for the audio)."""
    settings = ctx.settings
    if settings.oracle_phrases is not None:
        return None, None
    captioner = ctx.registry.get(settings.captioner) if settings.captioner else None
    tagger = ctx.registry.get(settings.tagger) if settings.tagger else None
    return captioner, tagger


def load_clip(ctx: RunContext, source: dict[str, Any], frames_strategy: str | None = None) -> dict[str, Any]:
    """Probe the source and decode its audio and its sampled frames into the run folder, the frames on a
    background thread while the audio decodes. Returns the state fields clip, timestamps_s, frames (FrameRef
    dicts), audio and warnings."""
    loaded = start_loading(ctx, source, frames_strategy)
    return {**loaded, "frames": loaded_frames(ctx, source, loaded["timestamps_s"])}


def start_loading(ctx: RunContext, source: dict[str, Any], frames_strategy: str | None = None) -> dict[str, Any]:
    """Probe the source, choose the times of its sampled frames, start decoding those frames in the background
    (ctx.prefetch, unless settings.decode_ahead is off; loaded_frames takes them) and decode the audio into
    work/audio_<rate>.npy: the audio stages need no frame, so they can run while the frames decode.

    Returns the state fields clip, timestamps_s (s from the clip's start), audio ({files, rms_dbfs, audible}) and
    warnings.
    """
    settings = ctx.settings
    (ctx.run_dir / "work").mkdir(parents=True, exist_ok=True)
    if source["kind"] == "video":
        info = probe_clip(source["path"])
        strategy = parse_frame_strategy(frames_strategy or settings.frames)
        timestamps = select_timestamps(info, strategy, settings.max_frames)
        clip = {**info.to_dict(), "name": Path(source["path"]).stem}
        audio_path = source["path"] if info.has_audio else None
        if settings.decode_ahead:
            ctx.prefetch.start(_frames_key(source, timestamps), _decode_frames, ctx, source, timestamps)
    else:
        timestamps = list(source["timestamps_s"])
        first = frame_refs_from_files(source["frame_paths"][:1], timestamps[:1])[0]
        clip = {"name": source["name"], "path": None, "width": first.width, "height": first.height}
        audio_path = source["audio_path"]
    audio, warnings = _load_audio(ctx, audio_path)
    return {"clip": clip, "timestamps_s": timestamps, "audio": audio, "warnings": warnings}


def loaded_frames(ctx: RunContext, source: dict[str, Any], timestamps_s: Sequence[float]) -> list[dict[str, Any]]:
    """The frames at `timestamps_s` as FrameRef dicts: for a video, those start_loading began decoding into
    work/frames (decoded now when it did not, as in a resumed run); for a frame folder, its image files."""
    if source["kind"] != "video":
        return [f.model_dump() for f in frame_refs_from_files(source["frame_paths"], timestamps_s)]
    return ctx.prefetch.take(_frames_key(source, timestamps_s), _decode_frames, ctx, source, timestamps_s)


def _frames_key(source: dict[str, Any], timestamps_s: Sequence[float]) -> tuple[str, str, tuple[float, ...]]:
    return ("frames", source["path"], tuple(timestamps_s))


def _decode_frames(ctx: RunContext, source: dict[str, Any], timestamps_s: Sequence[float]) -> list[dict[str, Any]]:
    frames = extract_frames(source["path"], timestamps_s, ctx.run_dir / "work" / "frames")
    return [f.model_dump() for f in frames]


def _load_audio(ctx: RunContext, audio_path: str | None) -> tuple[dict[str, Any], list[str]]:
    """Decode the audio at the rates the audio models listen at into work/audio_<rate>.npy; returns the state's
    audio field ({files, rms_dbfs, audible}) and warnings."""
    settings = ctx.settings
    captioner, tagger = audio_models(ctx)
    rates = sorted({m.sampling_rate for m in (captioner, tagger) if m is not None})
    audio: dict[str, Any] = {"files": {}, "rms_dbfs": None, "audible": False}
    warnings: list[str] = []
    if audio_path is None:
        warnings.append("the clip has no audio stream: nothing is audible, so no object is segmented")
    elif rates:
        decoded = decode_audio(audio_path, rates)
        for rate, samples in decoded.items():
            path = ctx.run_dir / "work" / f"audio_{rate}.npy"
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
    return audio, warnings


def caption_audio(
    ctx: RunContext, timestamps_s: Sequence[float], audio: dict[str, Any], queries: tuple[str, ...] | None = None
) -> tuple[list[list[str]], dict[str, int]]:
    """Captions per frame (frames x queries) of the audio windows at the frames' `timestamps_s`, from the captioner,
    through the cache; empty when nothing is audible."""
    settings = ctx.settings
    queries = queries or settings.queries
    captioner, _ = audio_models(ctx)
    if not audio["audible"] or captioner is None:
        return [[] for _ in timestamps_s], dict(NO_USAGE)
    timestamps = list(timestamps_s)
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


def tag_frames(ctx: RunContext, timestamps_s: Sequence[float], audio: dict[str, Any]) -> list[list[tuple[str, float]]]:
    """Top-k (label, probability) per frame, for the audio windows at the frames' `timestamps_s`, from the tagger;
    empty when nothing is audible or no tagger is set."""
    settings = ctx.settings
    _, tagger = audio_models(ctx)
    if not audio["audible"] or tagger is None:
        return [[] for _ in timestamps_s]
    samples = np.load(audio["files"][str(tagger.sampling_rate)])
    timestamps = list(timestamps_s)
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
    """Detections (as dicts) per frame for its phrases, in original pixels.

    In propagate mode only the seed candidates (settings.seed_frames) are grounded; every other frame with phrases
    gets no boxes and a "deferred" entry (its phrases and thresholds) that segmentation grounds if tracking drifts.
    In video mode every frame with phrases is deferred: the video model grounds them while it segments.
    """
    settings = ctx.settings
    refs = frame_refs(frames)
    todo = list(range(len(refs)))
    if settings.segmentation == "propagate":
        todo = seed_candidates([bool(p) for p in phrases], settings.seed_frames)
    elif settings.segmentation == "video":
        todo = []
    found = []
    if todo:  # nothing to ground loads no grounder (video mode never needs one)
        found = ground_frames(
            _grounder(ctx),
            [refs[k] for k in todo],
            [phrases[k] for k in todo],
            box_threshold,
            text_threshold,
            settings.model_max_side,
        )
    grounded = dict(zip(todo, found, strict=True))
    out = []
    for k, ref in enumerate(refs):
        if k in grounded:
            out.append(grounded[k].to_dict())
        elif phrases[k]:
            deferred = {"phrases": list(phrases[k]), "box_threshold": box_threshold, "text_threshold": text_threshold}
            out.append({**Detections.empty(ref.index).to_dict(), "deferred": deferred})
        else:
            out.append(Detections.empty(ref.index).to_dict())
    return out


def _grounder(ctx: RunContext) -> Any:
    # Raw detector outputs are kept per (picture, caption): a refine round that only changes thresholds reuses them.
    return with_detection_cache(ctx.registry.get(ctx.settings.grounder))


def _ground_deferred(ctx: RunContext, ref: FrameRef, deferred: dict[str, Any]) -> Detections:
    """Ground one frame that ground_phrases deferred, with the phrases and thresholds it recorded."""
    [found] = ground_frames(
        _grounder(ctx),
        [ref],
        [deferred["phrases"]],
        deferred["box_threshold"],
        deferred["text_threshold"],
        ctx.settings.model_max_side,
    )
    return found


def segment_detections(
    ctx: RunContext, frames: list[dict[str, Any]], detections: list[dict[str, Any]], masks_file: Path
) -> list[dict[str, Any]]:
    """Masks for every detection, written to `masks_file` as FrameMasks dicts (COCO RLE); returns the dicts.

    Image mode segments every frame on its own (the paper); propagate mode tracks the best-grounded frame's
    objects through the clip with a video tracker (SAM2's, or SAM 3's seeded by its own text grounding) and
    repairs the frames where the track drifted (an object vanished, a full-frame mask, a jumping area): each is
    grounded (if it was deferred) and segmented from its own boxes, its objects keeping the ids of the tracked
    objects they overlap.
    """
    refs = frame_refs(frames)
    if ctx.settings.segmentation == "propagate":
        dicts = _propagated_masks(ctx, refs, detections)
    elif ctx.settings.segmentation == "video":
        dicts = _video_masks(ctx, refs, detections)
    else:
        dets = [Detections.from_dict(d) for d in detections]
        dicts = [m.to_dict() for m in segment_frames(image_segmenter(ctx), refs, dets, ctx.settings.model_max_side)]
    write_json_atomic(masks_file, dicts)
    return dicts


def image_segmenter(ctx: RunContext) -> Segmenter:
    """The run's image segmenter, with its image embeddings kept across refine rounds when it can reuse them."""
    if ctx.segmenter is None:
        segmenter = ctx.registry.get(ctx.settings.segmenter)
        capacity = ctx.settings.embedding_cache
        ctx.segmenter = with_embedding_cache(segmenter, capacity) if capacity else segmenter
    return ctx.segmenter


def _propagated_masks(ctx: RunContext, refs: list[FrameRef], detections: list[dict[str, Any]]) -> list[dict]:
    """The propagate mode's FrameMasks dicts (COCO RLE), in frame order: decoded masks are never all held at once."""
    settings = ctx.settings
    dets = [Detections.from_dict(d) for d in detections]
    deferred = {k: d["deferred"] for k, d in enumerate(detections) if d.get("deferred")}
    with ctx.tracer.span("model_call", "propagator", model=getattr(settings.propagator, "model_id", None)) as call:
        if best_seed_frame(dets) is None:
            # The seed candidates found nothing: look in every other frame before answering "nothing here".
            for k in sorted(deferred):
                dets[k] = _ground_deferred(ctx, refs[k], deferred.pop(k))
        seed_index = best_seed_frame(dets)
        if seed_index is None:
            call.update(frames=len(refs), seed_frame=None)
            return [FrameMasks(ref.index, ref.height, ref.width).to_dict() for ref in refs]
        if settings.propagator is None:
            raise InputError("segmentation 'propagate' needs a propagator model (a SAM2 or SAM 3 video tracker)")
        tracked, reused = _track(ctx, refs, dets[seed_index])
        masks = MaskFile(tracked)  # reads see the repairs written into `tracked`
        # Re-check after each repair: an area "jump" next to a vanished object is gone once the object is back.
        regrounded: list[int] = []
        grounded_late: dict[int, dict[str, Any]] = {}
        while drifted := [k for k in drift_frames(masks) if k not in regrounded and k != seed_index]:
            k = drifted[0]
            regrounded.append(k)
            if k in deferred:
                dets[k] = _ground_deferred(ctx, refs[k], deferred.pop(k))
                grounded_late[k] = dets[k].to_dict()
            if len(dets[k]):
                [repaired] = segment_frames(image_segmenter(ctx), [refs[k]], [dets[k]], settings.model_max_side)
                reference = masks[_nearest_steady(k, len(refs), set(drifted))]
                tracked[k] = _with_object_ids(repaired, reference).to_dict()
        call.update(
            frames=len(refs),
            seed_frame=seed_index,
            reused_track=reused,
            regrounded=regrounded,
            grounded_late=list(grounded_late.values()),
        )
    return tracked


def _video_masks(ctx: RunContext, refs: list[FrameRef], detections: list[dict[str, Any]]) -> list[dict]:
    """The video mode's FrameMasks dicts (COCO RLE), in frame order: the phrases and box threshold the deferred
    detections recorded go to the video model, which streams the frames (decoded masks are never all held)."""
    spec = ctx.settings.video_segmenter
    if spec is None:
        raise InputError("segmentation 'video' needs a video segmenter model (SAM 3's video model)")
    asked = [d["deferred"]["phrases"] if d.get("deferred") else [] for d in detections]
    deferred = [d["deferred"] for d in detections if d.get("deferred")]  # one grounding call: one threshold
    threshold = deferred[0]["box_threshold"] if deferred else ctx.settings.box_threshold
    with ctx.tracer.span("model_call", "video_segmenter", model=spec.model_id) as call:
        found = segment_video(ctx.registry.get(spec), refs, asked, threshold, ctx.settings.model_max_side)
        dicts = [masks.to_dict() for masks in found]
        call.update(frames=len(refs), threshold=threshold, objects=[len(d["objects"]) for d in dicts])
    return dicts


def _track(ctx: RunContext, refs: list[FrameRef], seed: Detections) -> tuple[list[dict], bool]:
    """The seed's objects tracked through `refs`, as FrameMasks dicts (COCO RLE: memory stays flat over long clips)
    in frame order, and whether the propagator replayed its previous track (same frames, seed frame and boxes)."""
    spec = ctx.settings.propagator
    propagator = ctx.registry.get(spec)
    if not isinstance(propagator, MemoizedPropagator):
        # Kept in the registry, so the agent's later rounds and chat turns (new run contexts) find the track too.
        propagator = MemoizedPropagator(propagator)
        ctx.registry.install(spec, propagator)
    by_index = {
        masks.frame_index: masks.to_dict()
        for masks in propagate_detections(propagator, refs, seed, ctx.settings.model_max_side)
    }
    return [by_index[ref.index] for ref in refs], propagator.last_reused


def _nearest_steady(k: int, n: int, drifted: set[int]) -> int:
    """The frame position nearest to k (earlier first on ties) whose track did not drift; k itself when none."""
    for distance in range(1, n):
        for j in (k - distance, k + distance):
            if 0 <= j < n and j not in drifted:
                return j
    return k


def _with_object_ids(repaired: FrameMasks, reference: FrameMasks) -> FrameMasks:
    """`repaired` (one frame segmented from its own boxes) with each object named by the tracked object it overlaps
    most in `reference` (a neighbouring frame's tracked masks), objects ordered by id so colours stay put."""
    previous = {obj.object_id: obj.rle for obj in reference.objects if obj.object_id is not None}
    ids = match_ids_by_overlap(previous, [obj.rle for obj in repaired.objects])
    named = sorted((obj.with_object_id(i) for obj, i in zip(repaired.objects, ids, strict=True)), key=_object_id)
    return FrameMasks(repaired.frame_index, repaired.height, repaired.width, tuple(named))


def _object_id(obj: ObjectMask) -> int:
    return -1 if obj.object_id is None else obj.object_id


class MaskFile(Sequence[FrameMasks]):
    """A masks file's frames as FrameMasks whose masks decode from COCO RLE when their pixels are read (the checks
    read only areas, from the RLE), kept up to `keep_bytes` of would-be decoded masks (least recently read first
    out): a short clip is decoded at most once however many passes read its pixels, while a pass over a long clip
    holds a bounded number of frames (a 120-frame 1280x720 clip with 3 objects is 330 MB decoded, under 1 MB as
    RLE). A frame's dict replaced in `frames` (the list given) is read afresh."""

    def __init__(self, frames: list[dict[str, Any]], keep_bytes: int = 64 * 2**20) -> None:
        self.frames = frames
        self.keep_bytes = keep_bytes
        self._decoded: OrderedDict[int, tuple[dict[str, Any], FrameMasks]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self.frames)

    @overload
    def __getitem__(self, index: int) -> FrameMasks: ...
    @overload
    def __getitem__(self, index: slice) -> list[FrameMasks]: ...
    def __getitem__(self, index: int | slice) -> FrameMasks | list[FrameMasks]:
        if isinstance(index, slice):
            return [self[k] for k in range(*index.indices(len(self)))]
        index = range(len(self))[index]
        data = self.frames[index]
        kept = self._decoded.pop(index, None)
        if kept is not None:
            self._bytes -= _mask_bytes(kept[1])
            if kept[0] is data:
                self._keep(index, kept)
                return kept[1]
        frame = FrameMasks.from_dict(data)
        self._keep(index, (data, frame))
        return frame

    def _keep(self, index: int, entry: tuple[dict[str, Any], FrameMasks]) -> None:
        self._decoded[index] = entry
        self._bytes += _mask_bytes(entry[1])
        while self._bytes > self.keep_bytes and len(self._decoded) > 1:
            _, (_, dropped) = self._decoded.popitem(last=False)
            self._bytes -= _mask_bytes(dropped)


def _mask_bytes(frame: FrameMasks) -> int:
    return frame.height * frame.width * len(frame.objects)


def read_masks(masks_file: str | Path) -> MaskFile:
    return MaskFile(read_json(masks_file))


ROUND_OVERLAY_SIDE = 448
"""Longer side (px) of the overlays a round's critique and the trace look at: the VLM critics downscale to 448 px
(tools/models/critics.py MAX_IMAGE_SIDE) and the trace shows 160 px thumbnails, so nothing reads them larger; at
1280x720 drawing and writing them at this size costs a sixth of full size."""


def overlay_paths(run_dir: Path, round_index: int, n_frames: int) -> list[Path]:
    """work/overlays/round<r>_<k+1>.png: the overlays a round's critique looks at (frame numbers from 1)."""
    return [run_dir / "work" / "overlays" / f"round{round_index}_{frame_number(k)}.png" for k in range(n_frames)]


def render_round_overlays(
    ctx: RunContext, frames: list[dict[str, Any]], masks: Sequence[FrameMasks], round_index: int
) -> list[Path]:
    """Each frame with its masks drawn on it (labels = phrases), at most ROUND_OVERLAY_SIDE px on its longer side,
    saved at overlay_paths for the critic and the trace; a picture an earlier round of this run drew is copied."""
    paths = overlay_paths(ctx.run_dir, round_index, len(masks))
    paths[0].parent.mkdir(parents=True, exist_ok=True)

    def draw(frame: FrameRef, frame_masks: FrameMasks, path: Path) -> None:
        key = overlay_key(frame, frame_masks, ROUND_OVERLAY_SIDE)
        if ctx.overlays.copy_to(key, path):
            return
        picture, scale = load_frame(frame, ROUND_OVERLAY_SIDE)
        shown = [obj.mask for obj in frame_masks.objects]
        if scale != 1.0:
            shown = [np.asarray(Image.fromarray(m).resize(picture.size, Image.Resampling.NEAREST)) for m in shown]
        overlay = render_overlay(picture, shown, [o.phrase for o in frame_masks.objects])
        overlay.save(path, format="PNG", compress_level=WORK_PNG_LEVEL)
        ctx.overlays.remember(key, path)

    # Blending, pasting and PNG encoding run in PIL's C code without the GIL: frames are drawn in parallel.
    for_each_in_threads(draw, zip(frame_refs(frames), masks, paths, strict=True))
    return paths
