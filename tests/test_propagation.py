"""Video mode: video propagation with SAM2's and SAM 3's trackers in transformers and SAM2's in Meta's sam2 package
(tiny, streamed, bounded memory; one propagator runs both transformers trackers), SAM 3 text segmentation (tiny),
and the pure seed / id-matching / drift logic of tools/propagation.py.
Offline, CPU."""

from __future__ import annotations

import gc
import time
import tracemalloc
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tools.critique import CheckThresholds
from tools.datamodel import Detections, FrameMasks, ObjectMask
from tools.errors import ModelUnavailableError
from tools.frames import FrameRef, frame_refs_from_files, load_frame
from tools.models import sam2_meta, sam2_video, sam3
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry
from tools.models.sam3_vision import Sam3VisionCache
from tools.propagation import (
    MemoizedPropagator,
    Propagator,
    best_seed_frame,
    drift_findings,
    drift_frames,
    mask_box,
    match_ids_by_overlap,
    propagate_detections,
)
from tools.rle import decode_rle, encode_rle, rle_iou

VIDEO_TINY = ModelSpec(role="propagator", family="sam2_video", model_id="sam2-video-tiny-test", face="tiny")
SAM3_VIDEO_TINY = ModelSpec(
    role="propagator", family="sam3_tracker_video", model_id="sam3-video-tiny-test", face="tiny"
)
META_TINY = ModelSpec(role="propagator", family="sam2_meta", model_id="sam2-meta-tiny-test", face="tiny")
SAM3_TINY = ModelSpec(role="text_segmenter", family="sam3", model_id="sam3-tiny-test", face="tiny")
WIDTH, HEIGHT = 75, 53  # odd sizes: masks must come back at exactly this size
BOXES = np.array([[5, 6, 40, 30], [30, 12, 70, 50]], dtype=np.float32)


def _write_clip(folder: Path, n: int, width: int = WIDTH, height: int = HEIGHT) -> list[FrameRef]:
    """n PNG frames of noise with a bright square moving right: one decoded frame per file."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    paths = []
    for k in range(n):
        pixels = rng.randint(0, 120, (height, width, 3), dtype=np.uint8)
        x = 5 + (k * 3) % (width - 25)
        pixels[10:30, x : x + 20] = 255
        path = folder / f"{k:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return frame_refs_from_files(paths, [k * 0.5 for k in range(n)])


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models are all per-op overhead: a second intra-op thread only adds contention (5-20x slower on a
    loaded 2-core machine). Restored afterwards so other modules keep their setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TRACKERS = ModelRegistry("cpu")
"""Builds each tiny tracker once for this module."""


@pytest.fixture(scope="module", params=[VIDEO_TINY, SAM3_VIDEO_TINY], ids=["sam2", "sam3"])
def transformers_propagator(request: pytest.FixtureRequest) -> sam2_video.Sam2VideoPropagator:
    """Each tiny transformers tracker, SAM2's video model and SAM 3's tracker: the same propagator code runs both."""
    return TRACKERS.get(request.param)


@pytest.fixture(scope="module", params=[VIDEO_TINY, SAM3_VIDEO_TINY, META_TINY], ids=["sam2", "sam3", "sam2_meta"])
def propagator(request: pytest.FixtureRequest) -> Propagator:
    """Each tiny tracker: the transformers ones and Meta's SAM2 video predictor, under one contract."""
    return TRACKERS.get(request.param)


def _patch_frame_loader(monkeypatch: pytest.MonkeyPatch, loader) -> None:
    """Stand `loader` in for load_frame wherever a propagator decodes frames."""
    for module in (sam2_video, sam2_meta):
        monkeypatch.setattr(module, "load_frame", loader)


@pytest.fixture(scope="module")
def clip6(tmp_path_factory: pytest.TempPathFactory) -> list[FrameRef]:
    return _write_clip(tmp_path_factory.mktemp("clip6"), 6)


@pytest.fixture(scope="module")
def clip40(tmp_path_factory: pytest.TempPathFactory) -> list[FrameRef]:
    return _write_clip(tmp_path_factory.mktemp("clip40"), 40)


def _run(prop: Propagator, frames: list[FrameRef], seed: int, boxes: np.ndarray = BOXES) -> list:
    return list(prop.propagate(frames, seed, boxes, list(range(7, 7 + len(boxes))), max_side=64))


# ----------------------------------------------------------------------------------------------- SAM2 video


def test_propagates_both_ways_from_a_middle_seed(propagator: Propagator, clip6) -> None:
    assert isinstance(propagator, Propagator)
    out = _run(propagator, clip6, seed=3)
    assert [index for index, _, _ in out] == [3, 4, 5, 2, 1, 0]  # seed, forward, then backward: each frame once
    for _, masks, scores in out:
        assert masks.shape == (2, HEIGHT, WIDTH) and masks.dtype == bool
        assert scores.shape == (2,) and scores.dtype == np.float32 and np.all((scores >= 0) & (scores <= 1))
    again = _run(propagator, clip6, seed=3)
    for (i1, m1, s1), (i2, m2, s2) in zip(out, again, strict=True):
        assert i1 == i2 and np.array_equal(m1, m2) and np.array_equal(s1, s2)


def test_equals_transformers_whole_video_api(transformers_propagator: sam2_video.Sam2VideoPropagator, clip6) -> None:
    """The reference: the whole clip given to init_video_session, propagated forward then backward from the seed.
    Streaming and pruning change what is held, not the answer."""
    propagator = transformers_propagator
    processor, model = propagator.processor, propagator.model
    session = processor.init_video_session(video=[load_frame(r, 64)[0] for r in clip6], inference_device="cpu")
    processor.add_inputs_to_inference_session(
        session, frame_idx=3, obj_ids=[7, 8], input_boxes=[BOXES.tolist()], original_size=(HEIGHT, WIDTH)
    )
    reference = {}
    for reverse in (False, True):
        for out in model.propagate_in_video_iterator(session, start_frame_idx=3, reverse=reverse):
            masks = processor.post_process_masks([out.pred_masks], [[HEIGHT, WIDTH]])[0][:, 0].numpy()
            reference.setdefault(out.frame_idx, (masks, torch.sigmoid(out.object_score_logits).reshape(-1).numpy()))
    for index, masks, scores in _run(propagator, clip6, seed=3):
        assert np.array_equal(masks, reference[index][0])
        assert np.allclose(scores, reference[index][1], atol=1e-4)  # float noise of a different tensor layout


def test_seed_at_either_end_and_one_object(propagator: Propagator, clip6) -> None:
    assert [i for i, _, _ in _run(propagator, clip6, seed=0)] == [0, 1, 2, 3, 4, 5]
    last = _run(propagator, clip6, seed=5, boxes=BOXES[:1])
    assert [i for i, _, _ in last] == [5, 4, 3, 2, 1, 0] and last[0][1].shape == (1, HEIGHT, WIDTH)


def test_no_objects_skip_the_model(propagator: Propagator, clip6, monkeypatch) -> None:
    _patch_frame_loader(monkeypatch, lambda *a: pytest.fail("no frame should be decoded"))
    out = list(propagator.propagate(clip6, 2, np.zeros((0, 4), np.float32), [], max_side=64))
    assert [i for i, _, _ in out] == list(range(6))
    assert all(m.shape == (0, HEIGHT, WIDTH) and s.shape == (0,) for _, m, s in out)


def test_bad_prompts_are_rejected(propagator: Propagator, clip6) -> None:
    with pytest.raises(ValueError, match="seed frame"):
        propagator.propagate(clip6, 9, BOXES, [1, 2])  # raised at the call, before any frame is decoded
    with pytest.raises(ValueError, match="distinct obj_ids"):
        propagator.propagate(clip6, 1, BOXES, [1, 1])
    with pytest.raises(ValueError, match="increasing"):
        propagator.propagate(clip6[::-1], 1, BOXES, [1, 2])


def _count_live_frames(monkeypatch) -> dict[str, int]:
    """Wrap the propagator's frame loader to count decoded frames alive at once (weakref finalizers)."""
    counts = {"live": 0, "peak": 0, "loaded": 0}

    def release() -> None:
        counts["live"] -= 1

    def counting_load(ref: FrameRef, max_side: int | None = None) -> tuple[Image.Image, float]:
        image, scale = load_frame(ref, max_side)
        counts["live"] += 1
        counts["loaded"] += 1
        counts["peak"] = max(counts["peak"], counts["live"])
        weakref.finalize(image, release)
        return image, scale

    _patch_frame_loader(monkeypatch, counting_load)
    return counts


def _drain(iterator: Iterator, collect: bool = False) -> int:
    n = 0
    for _ in iterator:  # the caller keeps nothing: what stays alive is the propagator's own doing
        n += 1
        if collect:
            gc.collect()
    return n


def test_frames_stream_and_memory_is_bounded(propagator: Propagator, clip40, monkeypatch) -> None:
    counts = _count_live_frames(monkeypatch)
    _drain(propagator.propagate(clip40[:10], 5, BOXES, [1, 2], max_side=64))  # warm-up: lazy torch/PIL state
    peaks = {}
    # CPython's free lists (tuples, dicts, floats) keep freed blocks that tracemalloc still counts, up to caps a
    # 10-frame run does not reach: a full collection per frame empties them, so the peak is what is really alive.
    # Freezing the warm-up's objects makes those collections cost microseconds.
    gc.collect()
    gc.freeze()
    try:
        for n in (10, 40):
            propagator.stats = sam2_video.PropagationStats()
            tracemalloc.start()
            assert _drain(propagator.propagate(clip40[:n], n // 2, BOXES, [1, 2], max_side=64), collect=True) == n
            peaks[n] = (tracemalloc.get_traced_memory()[1], propagator.stats.peak_session_bytes)
            tracemalloc.stop()
            assert propagator.stats.peak_session_frames == 1  # the frame being tracked
    finally:
        gc.unfreeze()
    assert counts["peak"] == 1 and counts["loaded"] == 60  # one decoded frame alive at a time
    # tracemalloc sees Python objects and numpy arrays (masks), not torch storages: flat in the video's length.
    assert peaks[40][0] < 2 * peaks[10][0]
    # The session's tensors, measured directly: bounded by the memory window (16 frames around the current frame
    # and around the seed), so 40 frames hold little more than 10 frames that fit inside one window.
    assert peaks[10][1] <= peaks[40][1] < 2.5 * peaks[10][1]


def test_pruning_is_exact_and_is_what_bounds_memory(propagator: Propagator, clip40) -> None:
    propagator.stats = sam2_video.PropagationStats()
    pruned = _run(propagator, clip40, seed=20)
    bounded = propagator.stats.peak_session_bytes
    propagator.prune = False
    try:
        propagator.stats = sam2_video.PropagationStats()
        full = _run(propagator, clip40, seed=20)
        unbounded = propagator.stats.peak_session_bytes
        held_frames = propagator.stats.peak_session_frames
    finally:
        propagator.prune = True
    for (i1, m1, s1), (i2, m2, s2) in zip(pruned, full, strict=True):
        assert i1 == i2 and np.array_equal(m1, m2) and np.array_equal(s1, s2)
    if isinstance(propagator, sam2_meta.MetaSam2VideoPropagator):
        # Meta's state over a FrameFeed never holds more than the tracked frame's pixels: unpruned, it grows by
        # every frame's outputs only (memories, pointers, low-res masks), about 12 KB per object and frame here.
        assert held_frames == 1 and unbounded - bounded > 40 * 2 * 6_000
    else:
        assert held_frames == 40 and unbounded > 3 * bounded  # transformers alone keeps every streamed frame


def test_memoized_propagator_replays_the_same_track_and_misses_on_new_inputs(
    propagator: Propagator, clip6, tmp_path: Path
) -> None:
    direct = _run(propagator, clip6, seed=3)
    memo = MemoizedPropagator(propagator)
    first = _run(memo, clip6, seed=3)
    frames_before = propagator.stats.frames
    replay = _run(memo, clip6, seed=3)
    assert memo.last_reused and propagator.stats.frames == frames_before  # nothing tracked again
    for (i0, m0, s0), (i1, m1, s1), (i2, m2, s2) in zip(direct, first, replay, strict=True):
        # The memo hands back the RLE it keeps, the same masks the tracker gave, on the first run and on replay.
        assert i0 == i1 == i2 and m1 == m2 and np.array_equal(s0, s1) and np.array_equal(s1, s2)
        assert all(isinstance(r, dict) for r in m1) and np.array_equal(np.stack([decode_rle(r) for r in m1]), m0)
    _run(memo, clip6, seed=3, boxes=BOXES + 1.0)  # other boxes: tracked
    assert not memo.last_reused and propagator.stats.frames == frames_before + 6
    copies = [ref.model_copy(update={"path": str(tmp_path / f"{ref.index}.png")}) for ref in clip6]
    for ref, copy in zip(clip6, copies, strict=True):
        Path(copy.path).write_bytes(Path(ref.path).read_bytes())
    _run(memo, copies, seed=3, boxes=BOXES + 1.0)  # same pixels, other files: tracked
    assert not memo.last_reused
    stopped = memo.propagate(clip6, 3, BOXES, [7, 8], max_side=64)
    next(stopped)  # a track not consumed to the end is not kept
    _run(memo, clip6, seed=3)
    assert not memo.last_reused


def test_propagate_detections_gives_frame_masks(propagator: Propagator, clip6) -> None:
    seed = Detections(2, BOXES, np.array([0.9, 0.6], np.float32), ("dog", "cat"))
    frames = list(propagate_detections(propagator, clip6, seed, max_side=64))
    assert sorted(f.frame_index for f in frames) == list(range(6))
    for frame in frames:
        assert (frame.height, frame.width) == (HEIGHT, WIDTH)
        assert [o.phrase for o in frame.objects] == ["dog", "cat"] and frame.objects[0].box_score == pytest.approx(0.9)
    assert frames[0].frame_index == 2 and frames[0].objects[1].box == tuple(BOXES[1].tolist())
    # Through the memo the masks stay RLE (boxes counted on the runs) and every frame describes the same objects.
    kept = list(propagate_detections(MemoizedPropagator(propagator), clip6, seed, max_side=64))
    for frame, held in zip(frames, kept, strict=True):
        assert all(o.holds_rle for o in held.objects) and held.to_dict() == frame.to_dict()


def test_sam2_video_random_config_is_hiera_tiny() -> None:
    config = sam2_video.random_config()
    assert config.vision_config.fpn_hidden_size == config.memory_attention_hidden_size == 256
    assert config.num_maskmem == 7 and config.memory_encoder_output_channels == 64
    with torch.device("meta"):
        model = sam2_video.Sam2VideoModel(config)
    assert 38e6 < sum(p.numel() for p in model.parameters()) < 40e6
    tiny = sam2_video.tiny_config()
    assert tiny.vision_config.fpn_hidden_size == tiny.memory_attention_hidden_size == 128


def test_saved_tiny_loads_as_real(transformers_propagator: sam2_video.Sam2VideoPropagator, clip6, tmp_path) -> None:
    propagator = transformers_propagator
    propagator.model.save_pretrained(tmp_path)
    propagator.processor.save_pretrained(tmp_path)
    real = ModelRegistry("cpu").get(propagator.spec.model_copy(update={"model_id": str(tmp_path), "face": "real"}))
    for (i1, m1, s1), (i2, m2, s2) in zip(_run(propagator, clip6, 1), _run(real, clip6, 1), strict=True):
        # Same weights, but loaded ones sit at other memory alignments, and MKL's float32 rounding depends on that
        # (logits differ by ~1e-9 even object by object): scores may differ in their last bit.
        assert i1 == i2 and np.array_equal(m1, m2) and np.allclose(s1, s2, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------- SAM 3


@pytest.fixture(scope="module")
def text_segmenter() -> sam3.Sam3TextSegmenter:
    return sam3.load_sam3(SAM3_TINY, "cpu")


def _image(seed: int) -> Image.Image:
    return Image.fromarray(np.random.RandomState(seed).randint(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))


def test_sam3_labels_instances_per_phrase(text_segmenter: sam3.Sam3TextSegmenter) -> None:
    image = _image(1)
    found = text_segmenter.segment_text(image, ["dog", "acoustic guitar", "dog", " "], threshold=0.0, mask_threshold=0)
    queries = text_segmenter.model.config.detr_decoder_config.num_queries
    assert [f.phrase for f in found] == ["dog"] * queries + ["acoustic guitar"] * queries
    for inst in found:
        assert inst.mask.shape == (HEIGHT, WIDTH) and inst.mask.dtype == bool and 0 <= inst.score <= 1
        x0, y0, x1, y1 = inst.box
        assert -1e-3 <= x0 <= x1 <= WIDTH + 1e-3 and -1e-3 <= y0 <= y1 <= HEIGHT + 1e-3
    dog = [f.score for f in found if f.phrase == "dog"]
    assert dog == sorted(dog, reverse=True)
    again = text_segmenter.segment_text(image, ["dog", "acoustic guitar"], threshold=0.0, mask_threshold=0)
    assert all(np.array_equal(a.mask, b.mask) and a.score == b.score for a, b in zip(found, again, strict=True))
    strict = text_segmenter.segment_text(image, ["dog"], threshold=0.0, mask_threshold=0.5)
    assert all(not np.any(s.mask & ~f.mask) for s, f in zip(strict, found, strict=False))


def test_sam3_thresholds_and_empty_phrases(text_segmenter: sam3.Sam3TextSegmenter) -> None:
    assert text_segmenter.segment_text(_image(2), ["dog"], threshold=1.0) == []
    before = text_segmenter.vision_cache.passes
    assert text_segmenter.segment_text(_image(2), ["", "  "]) == []
    assert text_segmenter.vision_cache.passes == before


def test_sam3_vision_features_are_encoded_once_per_picture(text_segmenter: sam3.Sam3TextSegmenter) -> None:
    """Refine rounds (the same pictures, other thresholds or phrases) reuse each picture's ViT output: the same
    instances as without the cache, one ViT pass per picture while it is cached, and the features transformers'
    own get_vision_features gives, whether the ViT ran or not."""

    def segmenter(frames: int) -> sam3.Sam3TextSegmenter:
        model, processor = text_segmenter.model, text_segmenter.processor
        return sam3.Sam3TextSegmenter(SAM3_TINY, model, processor, "cpu", Sam3VisionCache(frames))

    cached, uncached = segmenter(2), segmenter(0)
    pictures = [_image(10), _image(11)]
    for threshold, phrases in ((0.0, ["dog"]), (0.25, ["dog", "cat"]), (0.0, ["cat"])):  # tiny scores: 0.24-0.26
        for picture in pictures:
            a = cached.segment_text(picture, phrases, threshold=threshold, mask_threshold=0.5)
            b = uncached.segment_text(picture, phrases, threshold=threshold, mask_threshold=0.5)
            assert a and [(i.phrase, i.score, i.box) for i in a] == [(i.phrase, i.score, i.box) for i in b]
            assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a, b, strict=True))
    assert (cached.vision_cache.passes, cached.vision_cache.reused, uncached.vision_cache.passes) == (2, 4, 6)
    pixels = text_segmenter.processor(images=pictures[0], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        theirs = text_segmenter.model.get_vision_features(pixel_values=pixels)
        ours = cached._vision_features(pictures[0])
    assert cached.vision_cache.reused == 5
    assert torch.equal(ours.last_hidden_state, theirs.last_hidden_state)
    for name in ("fpn_hidden_states", "fpn_position_encoding"):
        assert all(torch.equal(a, b) for a, b in zip(getattr(ours, name), getattr(theirs, name), strict=True))
    hidden = ours.last_hidden_state
    assert cached.vision_cache.nbytes() == 2 * hidden.numel() * hidden.element_size()
    cached.segment_text(_image(12), ["dog"])  # a third picture: the least recently used one is dropped
    cached.segment_text(pictures[1], ["dog"])
    assert cached.vision_cache.passes == 4 and cached.vision_cache.entries.stats.evictions == 2


def test_sam3_tiny_tokenizer_encodes_any_text() -> None:
    ids = sam3.clip_tokenizer()("dog é")["input_ids"]
    vocab = sam3.clip_vocab()
    assert ids[0] == vocab["<|startoftext|>"] and ids[-1] == vocab["<|endoftext|>"] and len(ids) == 2 + 3 + 2


def test_sam3_random_config_is_the_real_detector() -> None:
    config = sam3.random_config()
    assert config.vision_config.backbone_config.num_hidden_layers == 32
    assert config.text_config.vocab_size == 49408 and config.detr_decoder_config.num_queries == 200
    with torch.device("meta"):
        model = sam3.Sam3Model(config)
    assert 800e6 < sum(p.numel() for p in model.parameters()) < 880e6


def test_sam3_saved_tiny_loads_as_real(text_segmenter: sam3.Sam3TextSegmenter, tmp_path) -> None:
    text_segmenter.model.save_pretrained(tmp_path)
    text_segmenter.processor.save_pretrained(tmp_path)
    real = sam3.load_sam3(ModelSpec(role="text_segmenter", family="sam3", model_id=str(tmp_path)), "cpu")
    a = text_segmenter.segment_text(_image(3), ["cat"], threshold=0.0, mask_threshold=0.5)
    b = real.segment_text(_image(3), ["cat"], threshold=0.0, mask_threshold=0.5)
    assert all(np.array_equal(x.mask, y.mask) and x.score == y.score for x, y in zip(a, b, strict=True))


# ----------------------------------------------------------------------------------------------- loading


def test_registry_builds_each_model_once() -> None:
    registry = ModelRegistry("cpu")
    assert registry.get(VIDEO_TINY) is registry.get(VIDEO_TINY)
    assert registry.get(SAM3_TINY) is registry.get(SAM3_TINY)


@pytest.mark.parametrize(
    ("role", "family", "model_id"),
    [
        ("propagator", "sam2_video", "openavs-tests/no-such-sam2-video"),
        ("propagator", "sam2_meta", "facebook/sam2.1-hiera-small"),
        ("text_segmenter", "sam3", "openavs-tests/no-such-sam3"),
    ],
)
def test_uncached_real_model_fails_fast(role: str, family: str, model_id: str) -> None:
    start = time.perf_counter()
    with pytest.raises(ModelUnavailableError, match=model_id):
        ModelRegistry("cpu").get(ModelSpec(role=role, family=family, model_id=model_id, face="real"))
    assert time.perf_counter() - start < 5


# ----------------------------------------------------------------------------------------------- pure logic


def _dets(frame: int, scores: list[float]) -> Detections:
    boxes = np.tile(np.array([[0, 0, 1, 1]], np.float32), (len(scores), 1))
    return Detections(frame, boxes, np.array(scores, np.float32), tuple("x" * len(scores)))


def test_best_seed_frame() -> None:
    assert best_seed_frame([]) is None
    assert best_seed_frame([Detections.empty(0), Detections.empty(1)]) is None
    assert best_seed_frame([_dets(0, [0.3, 0.5]), Detections.empty(1), _dets(2, [0.7]), _dets(3, [0.6])]) == 2
    assert best_seed_frame([_dets(4, [0.7]), _dets(2, [0.7, 0.1]), _dets(3, [0.2])]) == 2  # tie: earliest frame


def _rect(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (20, 30)) -> np.ndarray:
    mask = np.zeros(size, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_rle_iou_and_box() -> None:
    a = [encode_rle(_rect(0, 0, 10, 10)), encode_rle(np.zeros((20, 30), bool))]
    b = [encode_rle(_rect(5, 0, 15, 10)), encode_rle(np.zeros((20, 30), bool))]
    assert np.allclose(rle_iou(a, b), [[50 / 150, 0], [0, 0]])  # two empty masks: 0
    assert rle_iou(a, []).shape == (2, 0)
    with pytest.raises(ValueError, match="shape"):
        rle_iou(a, [encode_rle(np.zeros((5, 5), bool))])
    assert mask_box(_rect(3, 4, 9, 12)) == (3.0, 4.0, 9.0, 12.0)
    assert mask_box(np.zeros((5, 5), bool)) == (0.0, 0.0, 0.0, 0.0)


def test_match_ids_by_overlap() -> None:
    def match(prev: dict[int, np.ndarray], new: list[np.ndarray], **kw: float) -> list[int]:
        return match_ids_by_overlap({k: encode_rle(m) for k, m in prev.items()}, [encode_rle(m) for m in new], **kw)

    prev = {4: _rect(0, 0, 10, 10), 9: _rect(20, 0, 30, 10)}
    new = [_rect(21, 0, 30, 10), _rect(0, 12, 10, 20), _rect(1, 0, 10, 10)]
    assert match(prev, new) == [9, 10, 4]  # the unmatched one gets the next id after 9
    # Greedy: the better overlap wins the id, the other new mask gets a fresh one.
    assert match({1: _rect(0, 0, 10, 10)}, [_rect(2, 0, 12, 10), _rect(0, 0, 10, 10)]) == [2, 1]
    assert match({1: _rect(0, 0, 10, 10)}, [_rect(6, 0, 16, 10)], iou_threshold=0.3) == [2]
    assert match({1: _rect(0, 0, 10, 10)}, [_rect(6, 0, 16, 10)], iou_threshold=0.2) == [1]
    assert match({}, [_rect(0, 0, 1, 1), _rect(1, 1, 2, 2)]) == [0, 1]
    assert match({3: _rect(0, 0, 1, 1)}, []) == []
    with pytest.raises(ValueError, match="shape"):
        match({1: np.zeros((4, 4), bool)}, [np.zeros((5, 5), bool)])


def _frame(index: int, *objects: tuple[str, np.ndarray]) -> FrameMasks:
    return FrameMasks(index, 20, 30, tuple(ObjectMask(m, p, mask_box(m), 0.9, 0.9) for p, m in objects))


def test_drift_frames() -> None:
    dog, cat = _rect(0, 0, 10, 10), _rect(15, 5, 25, 15)
    steady = [_frame(k, ("dog", dog), ("cat", cat)) for k in range(4)]
    assert drift_frames(steady) == [] and drift_findings(steady) == []
    clip = [
        _frame(0, ("dog", dog), ("cat", cat)),
        _frame(1, ("dog", np.zeros((20, 30), bool)), ("cat", cat)),  # the dog vanished
        _frame(2, ("dog", _rect(0, 0, 30, 18)), ("cat", cat)),  # the dog fills 90% of the frame: full frame, jump
        _frame(3, ("dog", dog), ("cat", cat)),
        _frame(4, ("cat", cat)),  # the dog's object is gone
    ]
    assert drift_frames(clip) == [1, 2, 3, 4]  # 3: the dog shrinks back to 1/6 of the frame, an area jump
    problems = {(f.frame_index, f.problem.value) for f in drift_findings(clip)}
    assert {(1, "tiny_mask"), (2, "full_frame"), (2, "area_jump"), (4, "empty_mask")} <= problems
    # A phrase small in every frame is small, not drifting; the thresholds are the critique's.
    speck = [_frame(k, ("bee", _rect(0, 0, 1, 1))) for k in range(3)]
    assert drift_frames(speck) == []
    looser = CheckThresholds(full_frame_fraction=0.95, area_jump_ratio=100.0)
    assert drift_frames(clip, looser) == [1, 2, 4]  # 2 still jumps x450 from the vanished dog, 3 only x5.4
    assert "full_frame" not in {f.problem.value for f in drift_findings(clip, looser)}
