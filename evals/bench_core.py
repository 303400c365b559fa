"""The benchmark's phases: the naive way and the optimized way over the same clip, and the long-clip memory run.

Callable in-process (tests, with tiny faces) or one phase per subprocess (evals.bench), so that each phase's peak
memory is its own. Both ways share ONE loaded GroundingDINO and ONE loaded SAM2 (no model is loaded twice).

- naive (the paper's research code): decode the WHOLE clip into memory, pick the sampled frames, then for every
  refine round and every frame run GroundingDINO on that frame alone (batch 1) and SAM2 (encoder + decoder).
- optimized (this project): the real pipeline graph (decode only the sampled frames, GroundingDINO in batches,
  outputs written) for round 0, then each refine round as the agent runs it (ground -> segment -> overlays ->
  critic checks) through graphs.stages, with GroundingDINO's raw outputs and SAM2's image embeddings cached. Two
  segmentation modes: `image` (every frame on its own, as the paper: equivalent to the naive way by construction)
  and `propagate` (the headline: GroundingDINO on the seed candidates only, SAM2 video tracking from the
  best-grounded one, drifted frames repaired; a refine round seeding the same boxes reuses the track).

Refine rounds change only the box threshold (0.25, 0.30, ...), so every model input of a later round equals the
first round's: caching is exact, and image-mode masks must be identical to the naive way's wherever both got the
same boxes. Propagated masks are a different method: they are compared to the naive way's by IoU, for information.
"""

from __future__ import annotations

import bisect
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
from PIL import Image

from agent.runner import run_graph
from evals.bench_config import BenchConfig
from evals.bench_memory import peak_rss_mb, reset_peak_rss, rss_mb
from evals.bench_standins import MeteredGrounder, StandInCaptioner, StandInTagger
from graphs.context import PipelineSettings, RunContext
from graphs.pipeline import VideoSource
from graphs.stages import ground_phrases, read_masks, render_round_overlays, segment_detections
from tools.critic import Critic
from tools.datamodel import Detections, FrameMasks
from tools.embedding_cache import with_detection_cache, with_embedding_cache
from tools.frames import FrameRef
from tools.media import probe_clip
from tools.models import sam2_video
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry
from tools.models.sam2 import Sam2Segmenter, build_random
from tools.sampling import select_timestamps
from tools.synthclip import synthetic_frame, write_synthetic_clip
from tools.tracing import TraceWriter
from tools.translate import LexiconTranslator

# ------------------------------------------------------------------------------------------------------ models


def grounder_batch_for(device: str) -> int:
    """Images per GroundingDINO forward: 4 on accelerators; 1 on CPU, where a batch buys nothing (compute-bound)
    and costs cache locality. Measured here at 384 px, per image: batch 1 / 2 / 4 = 1.55 / 1.61 / 1.87 s with one
    thread, 0.90 / 0.90 / 0.98 s with two."""
    return 1 if device == "cpu" else 4


class _ModuleTimer:
    """Seconds spent in one torch module's forward (GroundingDINO's BERT text encoder), via forward hooks."""

    def __init__(self, module: torch.nn.Module | None) -> None:
        self.seconds = 0.0
        self._start = 0.0
        if module is not None:
            module.register_forward_pre_hook(self._pre)
            module.register_forward_hook(self._post)

    def _pre(self, *_: Any) -> None:
        self._start = time.perf_counter()

    def _post(self, *_: Any) -> None:
        self.seconds += time.perf_counter() - self._start


@dataclass
class VisionModels:
    """The two vision models, loaded once, and the registry that serves them to the graph."""

    registry: ModelRegistry
    grounder_spec: ModelSpec
    segmenter_spec: ModelSpec
    propagator_spec: ModelSpec
    grounder: Any  # GroundingDinoGrounder
    segmenter: Any  # Sam2Segmenter
    propagator: Any  # Sam2VideoPropagator
    build_s: dict[str, float]
    text_timer: _ModuleTimer


def build_models(cfg: BenchConfig) -> VisionModels:
    """GroundingDINO, SAM2 and SAM2 video of `cfg.face` through the registry (random: real-size architectures,
    random weights, no downloads). SAM2 at an input other than 1024 px is built the same way at that size."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    registry = ModelRegistry(cfg.device)
    g_spec = ModelSpec(role="grounder", family="grounding_dino", model_id=cfg.grounder_model, face=cfg.face)
    s_spec = ModelSpec(role="segmenter", family="sam2", model_id=cfg.segmenter_model, face=cfg.face)
    p_spec = ModelSpec(role="propagator", family="sam2_video", model_id=cfg.segmenter_model, face=cfg.face)
    grounder = registry.get(g_spec)
    if cfg.grounder_max_side:
        side = cfg.grounder_max_side
        grounder.processor.image_processor.size = {"shortest_edge": side, "longest_edge": side}
    if cfg.face == "random" and cfg.sam2_image_size != 1024:
        start = time.perf_counter()
        model, processor = build_random(cfg.segmenter_model, cfg.sam2_image_size)
        segmenter = Sam2Segmenter(s_spec, model.to(registry.device), processor, registry.device)
        registry.install(s_spec, segmenter)
        registry.load_seconds["segmenter"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        model, processor = sam2_video.build_random(cfg.segmenter_model, cfg.sam2_image_size)
        propagator = sam2_video.Sam2VideoPropagator(p_spec, model.to(registry.device), processor, registry.device)
        registry.install(p_spec, propagator)
        registry.load_seconds["propagator"] = round(time.perf_counter() - start, 3)
    else:
        segmenter = registry.get(s_spec)
        propagator = registry.get(p_spec)
    text_backbone = getattr(getattr(grounder.model, "model", None), "text_backbone", None)
    return VisionModels(
        registry,
        g_spec,
        s_spec,
        p_spec,
        grounder,
        segmenter,
        propagator,
        dict(registry.load_seconds),
        _ModuleTimer(text_backbone),
    )


WARM_TRACK_FRAMES = 9
"""Frames tracked while warming up: past SAM2's 7 memory frames, so every memory-attention shape a clip meets (1 to 7
memories) has picked its kernels before any way is timed."""


def warm_up(models: VisionModels, size: tuple[int, int], objects: int, frames: int) -> None:
    """One GroundingDINO forward, one SAM2 pass, SAM2 encoder passes of each batch size a clip of `frames` frames
    meets, and a short track of `objects` boxes on synthetic frames: first calls allocate and pick kernels, which
    no way should be charged for."""
    image = Image.fromarray(synthetic_frame(0, *size))
    models.grounder.detect([image], [["dog"]], [0], 0.25, 0.25)
    width, height = size
    models.segmenter.segment(image, np.array([[0, 0, width / 2, height / 2]], np.float32))
    batch = models.segmenter.embed_batch_size
    for n in {min(batch, frames), frames % batch} - {0, 1}:
        models.segmenter.embed_batch([image] * n)
    boxes = np.array([[k, k, width / 2 + k, height / 2 + k] for k in range(objects)], np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        refs = []
        for k in range(WARM_TRACK_FRAMES):
            path = Path(tmp) / f"warm{k}.png"
            Image.fromarray(synthetic_frame(k, *size)).save(path)
            refs.append(FrameRef(index=k, timestamp_s=float(k), path=str(path), width=width, height=height))
        list(models.propagator.propagate(refs, 0, boxes, list(range(objects))))


@dataclass
class _Compute:
    """Model seconds so far: GroundingDINO (whole detect calls), its text encoder, SAM2 encoder and decoder, SAM2
    video tracking (per frame: reading the frame, preprocessing, forward, masks to original size)."""

    grounder_s: float = 0.0
    text_s: float = 0.0
    embed_s: float = 0.0
    decode_s: float = 0.0
    track_s: float = 0.0
    forward_passes: int = 0
    embed_calls: int = 0
    tracked_frames: int = 0

    @property
    def model_s(self) -> float:
        return self.grounder_s + self.embed_s + self.decode_s + self.track_s

    def minus(self, other: _Compute) -> _Compute:
        return _Compute(**{k: getattr(self, k) - getattr(other, k) for k in asdict(self)})


def _compute(models: VisionModels, metered: MeteredGrounder) -> _Compute:
    stats, tracking = models.segmenter.stats, models.propagator.stats
    return _Compute(
        metered.seconds,
        models.text_timer.seconds,
        stats.embed_seconds,
        stats.decode_seconds,
        tracking.seconds,
        models.grounder.total_forward_passes,
        stats.embed_calls,
        tracking.frames,
    )


# ------------------------------------------------------------------------------------------------------ the two ways


@dataclass
class WayResult:
    """One way's run over a clip: seconds per round (round 0 includes decoding), model compute, outputs."""

    rounds_s: list[float]
    cpu_s: float
    compute: _Compute
    stages_s: dict[str, float]
    boxes: list[list[list[list[float]]]] = field(default_factory=list)  # round -> frame -> box -> xyxy
    masks: list[list[list[np.ndarray]]] = field(default_factory=list)  # round -> frame -> object -> (H, W) bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.rounds_s)

    def summary(self) -> dict[str, Any]:
        return {
            "total_s": round(self.total_s, 3),
            "cpu_s": round(self.cpu_s, 3),
            "rounds_s": [round(s, 3) for s in self.rounds_s],
            "stages_s": {k: round(v, 3) for k, v in self.stages_s.items()},
            "compute": {k: round(v, 3) for k, v in asdict(self.compute).items()},
            "model_s": round(self.compute.model_s, 3),
            **self.extra,
        }


def _quiet(stage: str, message: str) -> None:
    pass


def _settings(cfg: BenchConfig, models: VisionModels, n_frames: int, segmentation: str) -> PipelineSettings:
    box, text = cfg.thresholds(0)
    return PipelineSettings(
        segmentation=segmentation,
        propagator=models.propagator_spec if segmentation == "propagate" else None,
        seed_frames=cfg.seed_frames,
        profile="bench",
        captioner=StandInCaptioner().spec,
        tagger=StandInTagger().spec,
        grounder=models.grounder_spec,
        segmenter=models.segmenter_spec,
        box_threshold=box,
        text_threshold=text,
        frames="avsbench",
        max_frames=max(64, n_frames),
        model_max_side=cfg.model_max_side,
        device=cfg.device,
        **({"embedding_cache": cfg.cache_capacity} if cfg.cache_capacity is not None else {}),
    )


def _refine_round(
    ctx: RunContext, state: dict[str, Any], round_index: int, box: float, text: float
) -> tuple[list[dict], list[FrameMasks]]:
    """One agent refine round over graphs.stages: ground -> segment -> overlays for the critic -> critic checks."""
    frames = state["frames"]
    detections = ground_phrases(ctx, frames, state["phrases"], box, text)
    masks_file = ctx.run_dir / "work" / f"masks_round{round_index}.json"
    segment_detections(ctx, frames, detections, masks_file)
    masks = read_masks(masks_file)
    overlays = [str(p) for p in render_round_overlays(ctx, frames, masks, round_index)]
    Critic().critique(
        frames=[f["path"] for f in frames],
        overlays=overlays,
        masks=masks,
        phrases=state["phrases"],
        captions=state.get("captions") or [[] for _ in frames],
        tags=state.get("tags") or [[] for _ in frames],
    )
    return detections, masks


def run_optimized(
    cfg: BenchConfig,
    models: VisionModels,
    clip: Path,
    run_dir: Path,
    rounds: int,
    segmentation: str = "propagate",
    keep_outputs: bool = True,
) -> tuple[WayResult, dict[str, Any]]:
    """Round 0 through the real pipeline graph, later rounds as the agent's refine rounds; caches on, fresh for this
    call. Returns the result and the graph's final state (frames, phrases) for the naive way to reuse."""
    models.grounder.output_cache = None  # each way starts cold: no cached outputs from an earlier way
    models.grounder.text_features.clear()
    models.grounder.text_features.enabled = True
    metered = MeteredGrounder(with_detection_cache(models.grounder), cfg.top_k)
    models.grounder.batch_size = cfg.grounder_batch or grounder_batch_for(models.registry.device)
    n_frames = len(select_timestamps(probe_clip(clip), "avsbench"))
    settings = _settings(cfg, models, n_frames, segmentation)
    # Wrapped here, at the capacity the stages would use, and installed: the graph's run context and the refine
    # rounds' context then share one cache, as the agent's rounds (one context) do.
    capacity = settings.embedding_cache
    caching = with_embedding_cache(models.segmenter, capacity) if capacity else models.segmenter
    registry = models.registry
    for spec, adapter in ((models.grounder_spec, metered), (models.segmenter_spec, caching)):
        registry.install(spec, adapter)
    for standin in (StandInCaptioner(), StandInTagger()):
        registry.install(standin.spec, standin)
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, never a resumed one (--work may be reused)
    run_dir.mkdir(parents=True)

    before, cpu0 = _compute(models, metered), time.process_time()
    start = time.perf_counter()
    state = run_graph(
        run_dir,
        settings,
        VideoSource(kind="video", path=str(clip)),
        registry=registry,
        translator=LexiconTranslator(min_tag_score=settings.lexicon_min_tag_score),
        progress=_quiet,
    )
    rounds_s = [time.perf_counter() - start]
    result = WayResult(rounds_s, 0.0, _Compute(), {})
    stages = {f"graph.{k}": v for k, v in state.get("timings_s", {}).items()}
    if keep_outputs:
        result.boxes.append([d["boxes"] for d in state["detections"]])
        result.masks.append([[o.mask for o in m.objects] for m in read_masks(state["masks_file"])])
    ctx = RunContext(settings, registry, None, run_dir, TraceWriter(run_dir / "trace_refine.jsonl"), progress=_quiet)
    for r in range(1, rounds):
        start = time.perf_counter()
        detections, masks = _refine_round(ctx, state, r, *cfg.thresholds(r))
        rounds_s.append(time.perf_counter() - start)
        if keep_outputs:
            result.boxes.append([d["boxes"] for d in detections])
            result.masks.append([[o.mask for o in m.objects] for m in masks])
        del masks
    result.cpu_s = time.process_time() - cpu0
    result.compute = _compute(models, metered).minus(before)
    stages["refine_rounds"] = sum(rounds_s[1:])
    result.stages_s = stages
    result.extra = {
        "embedding_cache": asdict(caching.cache.stats) if hasattr(caching, "cache") else None,
        "grounder_output_cache": asdict(models.grounder.output_cache.stats),
        "text_feature_cache": asdict(models.grounder.text_features.stats),
        "frames": len(state["frames"]),
        "grounder_batch": models.grounder.batch_size,
        "boxes_per_frame": round(float(np.mean([len(d["boxes"]) for d in state["detections"]])), 2),
        "segmentation": segmentation,
    }
    models.grounder.output_cache = None  # the naive way must not see cached outputs
    return result, state


def _decode_all(clip: Path) -> list[tuple[float, Any]]:
    """Research-code decoding: every frame of the clip as a PIL image, held in a list, with its time (s)."""
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        return [(float(f.pts * stream.time_base) - start, f.to_image()) for f in container.decode(stream)]


def run_naive(cfg: BenchConfig, models: VisionModels, clip: Path, phrases: list[list[str]], rounds: int) -> WayResult:
    """Per round, per frame: GroundingDINO on the frame alone, then SAM2 encoder + decoder; no caches. Boxes go
    through the framework's 0.01 px state rounding too, so that SAM2 gets the same prompts as in the optimized way."""
    metered = MeteredGrounder(models.grounder, cfg.top_k)
    models.grounder.output_cache = None
    models.grounder.text_features.enabled = False  # the paper's way: BERT in every forward pass
    timestamps = select_timestamps(probe_clip(clip), "avsbench", max(64, len(phrases)))
    before, cpu0 = _compute(models, metered), time.process_time()
    start = time.perf_counter()
    decoded = _decode_all(clip)
    times = [t for t, _ in decoded]
    # The frame on screen at t: the last one whose time <= t (tools.media's rule), the first when none is.
    picked = [decoded[max(0, bisect.bisect_right(times, t + 1e-6) - 1)][1] for t in timestamps]
    decode_s = time.perf_counter() - start
    result = WayResult([], 0.0, _Compute(), {"decode_all": decode_s})
    round_start = start
    for r in range(rounds):
        box, text = cfg.thresholds(r)
        boxes, masks = [], []
        for k, image in enumerate(picked):
            if not phrases[k]:
                boxes.append([])
                masks.append([])
                continue
            found = metered.detect([image], [phrases[k]], [k], box, text)[0]  # capped to top_k
            found = Detections.from_dict(found.to_dict())
            frame_masks, _ = models.segmenter.segment(image, found.boxes)
            boxes.append(found.to_dict()["boxes"])
            masks.append(list(frame_masks))
        result.boxes.append(boxes)
        result.masks.append(masks)
        result.rounds_s.append(time.perf_counter() - round_start)
        round_start = time.perf_counter()
    result.cpu_s = time.process_time() - cpu0
    result.compute = _compute(models, metered).minus(before)
    result.extra = {"frames_decoded": len(decoded), "frames": len(picked)}
    del decoded, picked
    return result


def compare_outputs(naive: WayResult, optimized: WayResult) -> dict[str, Any]:
    """Per round and frame: are the boxes the same (after the framework's 0.01 px rounding) and are the masks
    bit-identical? Masks must be identical wherever the boxes are (SAM2 image mode is equivalent by construction);
    boxes may differ where batched and single-image GroundingDINO forwards round differently in float32."""
    frames = objects = identical = equal_box_frames = 0
    identical_where_equal = objects_where_equal = 0
    max_box_diff = 0.0
    max_disagreement = 0.0
    for boxes_n, boxes_o, masks_n, masks_o in zip(
        naive.boxes, optimized.boxes, naive.masks, optimized.masks, strict=True
    ):
        for bn, bo, mn, mo in zip(boxes_n, boxes_o, masks_n, masks_o, strict=True):
            frames += 1
            same_boxes = bn == bo
            equal_box_frames += same_boxes
            if len(bn) == len(bo) and bn:
                max_box_diff = max(max_box_diff, float(np.max(np.abs(np.array(bn) - np.array(bo)))))
            for a, b in zip(mn, mo, strict=False):
                objects += 1
                same = a.shape == b.shape and np.array_equal(a, b)
                identical += same
                if same_boxes:
                    objects_where_equal += 1
                    identical_where_equal += same
                if a.shape == b.shape:
                    max_disagreement = max(max_disagreement, float(np.mean(a != b)))
    return {
        "frames_compared": frames,
        "frames_with_equal_boxes": equal_box_frames,
        "max_box_diff_px": round(max_box_diff, 4),
        "objects_compared": objects,
        "objects_identical": identical,
        "masks_identical": identical == objects and equal_box_frames == frames,
        "masks_identical_where_boxes_equal": identical_where_equal == objects_where_equal,
        "max_mask_pixel_disagreement": round(max_disagreement, 6),
    }


# ------------------------------------------------------------------------------------------------------ phases


def _clip(cfg: BenchConfig, work: Path, seconds: float, name: str) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    return write_synthetic_clip(work / f"{name}.mp4", seconds=seconds, fps=cfg.fps, size=cfg.clip_size)


def mask_agreement(naive: WayResult, other: WayResult) -> dict[str, Any]:
    """Mean and minimum IoU between the two ways' union masks, per (round, frame) where either is non-empty."""
    ious = []
    for masks_n, masks_o in zip(naive.masks, other.masks, strict=True):
        for mn, mo in zip(masks_n, masks_o, strict=True):
            a = np.logical_or.reduce(mn) if mn else None
            b = np.logical_or.reduce(mo) if mo else None
            if a is None and b is None:
                continue
            a = np.zeros_like(b) if a is None else a
            b = np.zeros_like(a) if b is None else b
            union = np.logical_or(a, b).sum()
            ious.append(float(np.logical_and(a, b).sum() / union) if union else 1.0)
    return {
        "frames_compared": len(ious),
        "mean_iou": round(float(np.mean(ious)), 4) if ious else None,
        "min_iou": round(float(np.min(ious)), 4) if ious else None,
    }


def bench_short(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    """The short clip (`cfg.frames` sampled frames) over `cfg.rounds` rounds: optimized image mode, optimized
    propagate mode, then naive, then the comparisons. Peak RSS per way (reset between ways where the kernel
    allows)."""
    clip = _clip(cfg, work, float(cfg.frames), "short")
    start = time.perf_counter()
    models = build_models(cfg)
    build_s = time.perf_counter() - start
    warm_up(models, cfg.clip_size, cfg.top_k, cfg.frames)
    peak_build = peak_rss_mb()
    resettable = reset_peak_rss()
    image, state = run_optimized(cfg, models, clip, work / "run_short_image", cfg.rounds, "image")
    peak_image = peak_rss_mb()
    reset_peak_rss()
    optimized, _ = run_optimized(cfg, models, clip, work / "run_short", cfg.rounds, "propagate")
    peak_optimized = peak_rss_mb()
    reset_peak_rss()
    naive = run_naive(cfg, models, clip, state["phrases"], cfg.rounds)
    peak_naive = peak_rss_mb()
    return {
        "phase": "short",
        "config": cfg.to_dict(),
        "build_s": round(build_s, 3),
        "model_load_s": models.build_s,
        "optimized": optimized.summary(),
        "optimized_image": image.summary(),
        "naive": naive.summary(),
        "equality": compare_outputs(naive, image),
        "agreement_propagate": mask_agreement(naive, optimized),
        "peak_rss_mb": {
            "after_build": round(peak_build, 1),
            "optimized": round(peak_optimized, 1),
            "optimized_image": round(peak_image, 1),
            "naive": round(peak_naive, 1),
            "per_phase": resettable,
        },
        "rss_mb_end": round(rss_mb(), 1),
    }


def bench_long(cfg: BenchConfig, work: Path) -> dict[str, Any]:
    """The long clip (`cfg.long_seconds` at one sampled frame per second), optimized way (propagate mode) only,
    outputs not kept in this process: shows whether memory grows with the clip's length."""
    clip = _clip(cfg, work, cfg.long_seconds, "long")
    models = build_models(cfg)
    warm_up(models, cfg.clip_size, cfg.top_k, frames=1)  # propagate mode segments one frame at a time
    peak_build = peak_rss_mb()
    resettable = reset_peak_rss()
    optimized, _ = run_optimized(cfg, models, clip, work / "run_long", cfg.long_rounds, keep_outputs=False)
    return {
        "phase": "long",
        "config": cfg.to_dict(),
        "optimized": optimized.summary(),
        "peak_rss_mb": {"after_build": round(peak_build, 1), "optimized": round(peak_rss_mb(), 1)},
        "per_phase": resettable,
        "rss_mb_end": round(rss_mb(), 1),
    }


def summarize(short: dict[str, Any], long: dict[str, Any]) -> dict[str, Any]:
    """The final JSON line: the headline figures of both phases (optimized = propagate mode)."""
    naive, opt, image = short["naive"], short["optimized"], short["optimized_image"]
    model_s = opt["model_s"]
    overhead_s = opt["total_s"] - model_s
    compute = opt["compute"]
    peak_short, peak_long = short["peak_rss_mb"]["optimized"], long["peak_rss_mb"]["optimized"]
    cfg = short["config"]

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    return {
        "naive_s": naive["total_s"],
        "optimized_s": opt["total_s"],
        "speedup": ratio(naive["total_s"], opt["total_s"]),
        "speedup_cpu": ratio(naive["cpu_s"], opt["cpu_s"]),
        "optimized_image_s": image["total_s"],
        "speedup_image_mode": ratio(naive["total_s"], image["total_s"]),
        # After the first round, the first two, ...: what a run that stops earlier would have gained.
        "speedup_after_each_round": [
            ratio(sum(naive["rounds_s"][: r + 1]), sum(opt["rounds_s"][: r + 1])) for r in range(len(opt["rounds_s"]))
        ],
        "overhead_fraction": ratio(overhead_s, model_s),
        "overhead_s": round(overhead_s, 3),
        "overhead_fraction_image_mode": ratio(image["total_s"] - image["model_s"], image["model_s"]),
        "model_s_optimized": model_s,
        "model_s_naive": naive["model_s"],
        "text_encoder_fraction_of_grounding": ratio(compute["text_s"], compute["grounder_s"]),
        "peak_rss_mb_short": peak_short,
        "peak_rss_mb_long": peak_long,
        "peak_rss_mb_naive": short["peak_rss_mb"]["naive"],
        "long_over_short_rss": ratio(peak_long, peak_short),
        "masks_identical_image_mode": short["equality"]["masks_identical"],
        "masks_identical_where_boxes_equal": short["equality"]["masks_identical_where_boxes_equal"],
        "propagate_mean_iou_vs_naive": short["agreement_propagate"]["mean_iou"],
        "frames_short": opt["frames"],
        "frames_long": long["optimized"]["frames"],
        "rounds": cfg["rounds"],
        "long_s": long["optimized"]["total_s"],
        "face": cfg["face"],
        "device": cfg["device"],
    }
