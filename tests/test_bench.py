"""Caching (SAM2 embeddings, GroundingDINO raw outputs) returns exactly what the uncached path returns, computes
each embedding once, and the benchmark's phases run end to end with tiny faces."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evals import bench_decode, bench_e2e, bench_sam3, bench_trackers
from evals.bench import QUICK, _config, _parser
from evals.bench_config import BenchConfig
from evals.bench_core import bench_long, bench_short, summarize
from evals.bench_standins import MeteredGrounder
from evals.bench_trackers_core import FAMILIES
from tests.clipfactory import write_test_clip
from tests.fakes import BoxGrounder, BoxSegmenter
from tools.datamodel import Detections
from tools.embedding_cache import CachingSegmenter, LRUCache, with_detection_cache, with_embedding_cache
from tools.frames import FrameRef
from tools.models.base import ModelSpec
from tools.models.grounding_dino import load_grounding_dino
from tools.models.sam2 import load_sam2
from tools.segmentation import segment_frames
from tools.synthclip import synthetic_frame

SAM2_TINY = ModelSpec(role="segmenter", family="sam2", model_id="tiny-sam2", face="tiny")
GDINO_TINY = ModelSpec(role="grounder", family="grounding_dino", model_id="tiny-gdino", face="tiny")


def _frames(tmp_path: Path, n: int = 3, size: tuple[int, int] = (96, 64)) -> list[FrameRef]:
    refs = []
    for k in range(n):
        path = tmp_path / f"{k:05d}.png"
        Image.fromarray(synthetic_frame(7 * k, *size)).save(path)
        refs.append(FrameRef(index=k, timestamp_s=float(k), path=str(path), width=size[0], height=size[1]))
    return refs


def _detections(frames: list[FrameRef], shift: float) -> list[Detections]:
    boxes = np.array([[5 + shift, 4, 60, 50], [40, 10 + shift, 90, 60]], np.float32)
    return [Detections(f.index, boxes, [0.9, 0.8], ["dog", "man"]) for f in frames]


def _run(segmenter, frames: list[FrameRef], rounds: list[list[Detections]]) -> list[list]:
    return [list(segment_frames(segmenter, frames, dets, max_side=1280)) for dets in rounds]


def test_cached_segmenter_gives_identical_masks_and_embeds_each_frame_once(tmp_path: Path) -> None:
    frames = _frames(tmp_path)
    rounds = [_detections(frames, 0.0), _detections(frames, 3.0)]  # round 2 prompts the same frames anew
    plain = load_sam2(SAM2_TINY, "cpu")
    expected = _run(plain, frames, rounds)

    inner = load_sam2(SAM2_TINY, "cpu")
    cached = with_embedding_cache(inner, capacity=8)
    assert isinstance(cached, CachingSegmenter)
    got = _run(cached, frames, rounds)

    assert inner.stats.embed_calls == len(frames)  # once per frame, not once per round
    assert plain.stats.embed_calls == len(frames) * len(rounds)
    assert cached.cache_stats.hits == len(frames) and cached.cache_stats.misses == len(frames)
    for want_round, got_round in zip(expected, got, strict=True):
        for want, have in zip(want_round, got_round, strict=True):
            assert len(want.objects) == len(have.objects) == 2
            for a, b in zip(want.objects, have.objects, strict=True):
                np.testing.assert_array_equal(a.mask, b.mask)
                assert a.mask_score == b.mask_score
    # Boxes of round 2 differ, so its masks must too: the cache keeps embeddings, not answers.
    assert any(not np.array_equal(a.mask, b.mask) for a, b in zip(got[0][0].objects, got[1][0].objects, strict=True))


def test_batched_encoder_passes_give_the_same_masks(tmp_path: Path) -> None:
    frames = _frames(tmp_path, n=7)
    dets = _detections(frames, 0.0)
    dets[1] = Detections.empty(1)  # a frame with nothing to segment is neither loaded nor encoded
    expected = _run(with_embedding_cache(load_sam2(SAM2_TINY, "cpu")), frames, [dets])

    inner = load_sam2(SAM2_TINY, "cpu")
    inner.embed_batch_size = 3  # as on a GPU (ACCELERATOR_EMBED_BATCH), small enough to need several chunks
    passes: list[int] = []
    embed_batch = inner.embed_batch
    inner.embed_batch = lambda images: passes.append(len(images)) or embed_batch(images)  # type: ignore[method-assign]
    cached = with_embedding_cache(inner, capacity=8)
    got = _run(cached, frames, [dets])

    assert passes == [2, 3, 1]  # chunks of 3 frames minus the empty one; the last chunk's single frame
    assert inner.stats.embed_calls == 6
    assert (cached.cache_stats.misses, cached.cache_stats.hits) == (6, 0)  # one lookup per segmented frame
    _run(cached, frames, [dets])  # a refine round: every frame cached, no encoder pass
    assert passes == [2, 3, 1] and (cached.cache_stats.misses, cached.cache_stats.hits) == (6, 6)
    for want, have in zip(expected[0], got[0], strict=True):
        assert (want.frame_index, len(want.objects)) == (have.frame_index, len(have.objects))
        for a, b in zip(want.objects, have.objects, strict=True):
            np.testing.assert_array_equal(a.mask, b.mask)
            assert a.mask_score == pytest.approx(b.mask_score, abs=1e-5)
    # Each embedding owns its tensors: a cached frame does not keep its whole batch alive.
    embeddings = inner.embed_batch([Image.open(f.path).convert("RGB") for f in frames[:2]])
    for level in embeddings[0].features:
        assert level.untyped_storage().nbytes() == level.numel() * level.element_size()


def test_cache_keys_follow_the_file_and_the_pixels(tmp_path: Path) -> None:
    frames = _frames(tmp_path, n=1)
    inner = load_sam2(SAM2_TINY, "cpu")
    cached = with_embedding_cache(inner, capacity=4)
    boxes = np.array([[5, 4, 60, 50]], np.float32)
    image = Image.open(frames[0].path).convert("RGB")

    cached.segment(image, boxes)
    cached.segment(image.copy(), boxes)  # same pixels, another object: a hit
    assert inner.stats.embed_calls == 1

    cached.segment_frames([frames[0]], [image], [boxes])
    cached.segment_frames([frames[0]], [image], [boxes])
    assert inner.stats.embed_calls == 2  # file keys and pixel keys are separate entries

    # A frame file rewritten in place (sample_frames re-decodes work/frames) must not reuse the old embedding.
    Image.fromarray(synthetic_frame(99, 96, 64)).save(frames[0].path)
    stat = os.stat(frames[0].path)
    os.utime(frames[0].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    cached.segment_frames([frames[0]], [Image.open(frames[0].path).convert("RGB")], [boxes])
    assert inner.stats.embed_calls == 3

    masks, scores = cached.segment(image, np.zeros((0, 4), np.float32))
    assert masks.shape == (0, 64, 96) and scores.shape == (0,)
    assert inner.stats.embed_calls == 3  # no boxes: no encoder pass


def test_with_embedding_cache_leaves_fakes_alone_and_does_not_stack() -> None:
    fake = BoxSegmenter()
    assert with_embedding_cache(fake) is fake
    cached = with_embedding_cache(load_sam2(SAM2_TINY, "cpu"), capacity=2)
    assert with_embedding_cache(cached) is cached
    assert cached.model is cached.inner.model  # attributes read through (result.json's provenance)


def test_lru_cache_evicts_least_recently_used() -> None:
    cache: LRUCache[str, int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recent
    cache.put("c", 3)
    assert "b" not in cache and cache.get("a") == 1 and cache.get("c") == 3
    assert cache.stats.evictions == 1 and cache.stats.hits == 3 and cache.get("b") is None
    with pytest.raises(ValueError):
        LRUCache(0)


def test_grounder_output_cache_is_exact_across_thresholds() -> None:
    images = [Image.fromarray(synthetic_frame(5 * k, 96, 64)) for k in range(3)]
    phrases = [["dog", "man"], ["acoustic guitar"], ["dog"]]
    plain = load_grounding_dino(GDINO_TINY, "cpu")
    cached = load_grounding_dino(GDINO_TINY, "cpu")
    cached.output_cache = LRUCache(16)
    for box, text in [(0.0, 0.0), (0.3, 0.25), (0.45, 0.3)]:
        want = plain.detect(images, phrases, [0, 1, 2], box, text)
        got = cached.detect(images, phrases, [0, 1, 2], box, text)
        for a, b in zip(want, got, strict=True):
            assert a.phrases == b.phrases
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.scores, b.scores)
    assert cached.total_forward_passes == 1  # one batch of 3 the first time, then post-processing only
    assert cached.last_stats.cached_items == 3 and cached.last_stats.forward_passes == 0


def test_text_features_are_encoded_once_per_caption_and_change_no_detection() -> None:
    images = [Image.fromarray(synthetic_frame(5 * k, 96, 64)) for k in range(5)]
    phrases = [["dog"], ["dog"], ["dog", "man"], ["dog"], ["dog"]]
    plain = load_grounding_dino(GDINO_TINY, "cpu")
    plain.text_features.enabled = False
    cached = load_grounding_dino(GDINO_TINY, "cpu")
    encoded_rows: list[int] = []
    embeddings = cached.model.model.text_backbone.embeddings
    embeddings.register_forward_hook(lambda _m, _args, out: encoded_rows.append(len(out)))
    for box in (0.0, 0.3):  # the second call forwards the same batches again (no output cache)
        want = plain.detect(images, phrases, list(range(5)), box, 0.25)
        got = cached.detect(images, phrases, list(range(5)), box, 0.25)
        for a, b in zip(want, got, strict=True):
            assert a.phrases == b.phrases
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(a.scores, b.scores)
    # Batches of 4 then 1: "dog ." padded to "dog . man ." and "dog . man ." in the first, "dog ." unpadded alone.
    assert cached.total_forward_passes == 4 and encoded_rows == [2, 1]
    assert cached.text_features.stats.hits == 3 and cached.text_features.stats.misses == 3
    assert cached.model.state_dict().keys() == plain.model.state_dict().keys()  # saving is unaffected


def test_detection_cache_goes_on_the_adapter_behind_wrappers() -> None:
    grounder = load_grounding_dino(GDINO_TINY, "cpu")
    metered = MeteredGrounder(grounder, top_k=2)
    assert with_detection_cache(metered, capacity=4) is metered
    assert isinstance(grounder.output_cache, LRUCache) and "output_cache" not in vars(metered)
    kept = grounder.output_cache
    with_detection_cache(grounder)
    assert grounder.output_cache is kept  # an existing cache is kept, not replaced
    fake = BoxGrounder({})
    assert with_detection_cache(fake) is fake and not hasattr(fake, "output_cache")


def test_bench_phases_run_end_to_end_with_tiny_faces(tmp_path: Path) -> None:
    cfg = BenchConfig(face="tiny", clip_size=(96, 64), fps=5.0, frames=3, long_seconds=10.0, rounds=2)
    short = bench_short(cfg, tmp_path / "short")
    long = bench_long(cfg, tmp_path / "long")
    summary = summarize(short, long)
    for key in ("naive_s", "optimized_s", "speedup", "overhead_fraction", "peak_rss_mb_short", "peak_rss_mb_long"):
        assert summary[key] is not None and summary[key] > 0, key
    assert summary["frames_short"] == 3 and summary["frames_long"] == 10
    assert short["naive"]["frames_decoded"] == 15  # the naive way decodes the whole clip
    assert short["optimized_image"]["compute"]["embed_calls"] == 3  # once per frame over both rounds
    assert short["naive"]["compute"]["embed_calls"] == 6
    assert short["optimized_image"]["embedding_cache"]["hits"] == 3
    assert short["equality"]["masks_identical_where_boxes_equal"]
    # Propagate mode tracks every frame of each round it cannot reuse, and compares to the naive way by IoU.
    assert short["optimized"]["compute"]["tracked_frames"] in (3, 6)
    assert short["optimized"]["segmentation"] == "propagate" and short["optimized_image"]["segmentation"] == "image"
    assert 0.0 <= summary["propagate_mean_iou_vs_naive"] <= 1.0
    assert long["optimized"]["compute"]["tracked_frames"] == 10


def test_bench_clip_size_option(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["--quick", "--clip-size", "1280x720", "--threads", "1"])
    default = _parser().parse_args(["--quick", "--threads", "1"])
    assert _config(args).clip_size == (1280, 720) and _config(default).clip_size == QUICK.clip_size
    for bad in ("1280", "13x7", "axb"):
        with pytest.raises(SystemExit) as exit_info:
            _parser().parse_args(["--clip-size", bad])
        assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("error: argument --clip-size") == 3


def test_tracker_bench_times_both_trackers_on_the_same_frames(capsys: pytest.CaptureFixture[str]) -> None:
    """evals.bench_trackers with tiny faces: both trackers propagate every frame, and its last stdout line is the
    JSON summary (timings are printed, not asserted)."""
    assert bench_trackers.main(["--face", "tiny", "--frames", "4", "--size", "96x64", "--repeats", "1"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 4 and summary["size"] == [96, 64]
    for family in FAMILIES:
        assert summary[f"{family}_tracked_frames"] == 4  # every frame, from each tracker
        assert summary[f"{family}_s_per_frame"] > 0 and summary[f"{family}_peak_session_mb"] > 0
    assert summary["meta_over_transformers"] == pytest.approx(
        summary["sam2_meta_s_per_frame"] / summary["sam2_video_s_per_frame"], rel=0.01
    )


@pytest.mark.parametrize("mode", ["image", "video", "propagate"])
def test_sam3_bench_reuses_vision_features_over_refine_rounds(mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    """evals.bench_sam3 with the tiny face, in each mode: the cached way runs one ViT pass per frame over all rounds,
    the uncached way one per frame and round (propagate mode: per frame grounded, and again per frame tracked in the
    rounds that found a seed), with equal answers; its last stdout line is the JSON summary. A bad option of the
    single-model benches is one line on stderr and exit code 2."""
    args = ["--mode", mode, "--face", "tiny", "--frames", "2", "--rounds", "3", "--size", "96x64", "--device", "cpu"]
    assert bench_sam3.main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["mode"] == mode and summary["vit_passes_cached"] == 2
    if mode == "propagate":  # round 0 finds instances (below), so it tracks both frames too
        assert summary["vit_passes_uncached"] >= 6 + 2
        assert summary["parameters_mb"] < summary["parameters_mb_without_sharing"]  # one ViT for both models
    else:
        assert summary["vit_passes_uncached"] == 6
        assert summary["parameters_mb"] == summary["parameters_mb_without_sharing"]
    assert summary["instances_equal"] and summary["instances"] > 0 and summary["cache_mb"] > 0
    assert all(len(summary["rounds_s"][way]) == 3 for way in ("uncached", "cached")) and summary["speedup"] > 0
    for bench, bad in (
        (bench_sam3, ["--frames", "0"]),
        (bench_sam3, ["--phrases", " , "]),
        (bench_sam3, ["--mode", "track"]),
        (bench_trackers, ["--repeats", "x"]),
        (bench_trackers, ["--device", "tpu"]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(["--face", "tiny", *bad])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_e2e_bench_reports_the_fastest_and_every_timed_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """evals.bench_e2e with tiny faces: one warm-up, then `--repeats` timed runs through the pipeline graph; the
    summary's stages are the fastest run's, and every run's wall-clock total is reported beside the median. The
    nodes run one after another, so a run lasts at least as long as its nodes together. --compare-decode-ahead adds
    as many runs that decode the frames after describing the audio."""
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=3.0, size=(64, 48))
    argv = [
        str(clip),
        "--profile",
        "tiny",
        "--repeats",
        "3",
        "--device",
        "cpu",
        "--top-k",
        "2",
        "--compare-decode-ahead",
        "--captioner-wait-s",
        "0.1",
    ]
    assert bench_e2e.main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    sequential = summary["sequential_decode"]
    assert (
        len(sequential["run_totals_s"]) == 3 and sequential["median_total_s"] == sorted(sequential["run_totals_s"])[1]
    )
    assert summary["decode_ahead_speedup"] == pytest.approx(
        sequential["median_total_s"] / summary["median_total_s"], 1e-2
    )
    totals = summary["run_totals_s"]
    assert len(totals) == 3 and summary["total_s"] == min(totals)
    assert summary["median_total_s"] == sorted(totals)[1]
    assert sum(summary["stages_s"].values()) == pytest.approx(summary["stage_sum_s"], abs=1e-3)
    assert summary["stage_sum_s"] <= summary["total_s"] + 0.005  # nodes' seconds are rounded to the ms
    assert "decode_frames" in summary["stages_s"]
    assert set(summary["model_calls_s"]) == {"captioner", "tagger"}
    assert summary["captioner_wait_s"] == 0.1 and summary["model_calls_s"]["captioner"] >= 0.1  # waited, then captioned
    assert summary["frames"] == 3 and summary["boxes"] == 3 * 2  # --top-k boxes on every frame

    agent_argv = [
        str(clip),
        "--profile",
        "tiny",
        "--repeats",
        "1",
        "--warmup",
        "2",
        "--device",
        "cpu",
        "--graph",
        "agent",
    ]
    assert bench_e2e.main(agent_argv) == 0
    out, err = capsys.readouterr()
    agent = json.loads(out.strip().splitlines()[-1])
    assert agent["graph"] == "agent" and "tiny-qwen2_5_vl" in agent["models"]  # the profile's critic judges
    assert agent["warmup"] == 2 and len(agent["run_totals_s"]) == 1 and err.count("[e2e] run ") == 3
    assert {"prepare", "decode_frames", "describe_audio", "ground", "critique", "finalize"} <= set(agent["stages_s"])

    (tmp_path / "notes.mp4").write_text("not a video")
    for bad_clip in ("missing.mp4", "notes.mp4"):
        assert bench_e2e.main([str(tmp_path / bad_clip), "--profile", "tiny"]) == 2
        assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {tmp_path / bad_clip}: ")
    bad_options = (
        ["--device", "tpu"],
        ["--repeats", "0"],
        ["--warmup", "0"],
        ["--captioner-wait-s", "-1"],
        ["--captioner-wait-s", "inf"],
    )
    for bad, said in zip(bad_options, ("error: --device tpu: expected cpu", *["error: arg"] * 4), strict=True):
        with pytest.raises(SystemExit) as exit_info:
            bench_e2e.main([str(clip), "--profile", "tiny", *bad])
        assert exit_info.value.code == 2 and capsys.readouterr().err.startswith(said)


def test_decode_bench_times_both_ways_and_compares_their_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """evals.bench_decode: per clip the median of each way and their ratio, the frames compared; bad input is one
    line and exit code 2."""
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=3.0, size=(64, 48))
    assert bench_decode.main([str(clip), str(clip), "--repeats", "2"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = summary["clips"]["clip.mp4"]
    assert result["frames"] == 3 and result["same_frames"] and summary["same_frames"]
    assert result["speedup"] == pytest.approx(result["plain_s"] / result["skipping_s"], rel=0.01)
    assert bench_decode.main([str(tmp_path / "missing.mp4")]) == 2
    assert capsys.readouterr().err.strip().startswith(f"error: {tmp_path / 'missing.mp4'}")
    assert bench_decode.main([str(clip), "--frames", "every:2"]) == 2
