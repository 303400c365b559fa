"""SAM 3's video model as the sam3 profile's video mode (tools/models/sam3_detect_track.py and
tools/video_segmentation.py): streamed frames give exactly transformers' whole-video answers, pruning is exact and
keeps memory flat, the phrases of each frame pick its instances, facebook/sam3's layout loads, and
`--segmentation video` runs end to end loading no other vision model. Offline, CPU, tiny faces."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agent.cli_settings import settings_from_args
from agent.profiles import base_profile, with_segmentation
from agent.runner import run_graph
from agent.solve import build_parser
from graphs.pipeline import VideoSource
from tests.clipfactory import write_test_clip
from tests.test_propagation import one_thread  # noqa: F401  (autouse: one thread for tiny models)
from tools.errors import InputError
from tools.frames import FrameRef, frame_refs_from_files
from tools.models import sam3, sam3_detect_track, sam3_video
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry
from tools.models.sam3_vision import Sam3VisionCache
from tools.rle import decode_rle
from tools.runfiles import read_json, read_mask_png
from tools.tracing import read_trace
from tools.video_segmentation import VideoInstances, segment_video

VIDEO_SEGMENTER_TINY = ModelSpec(role="video_segmenter", family="sam3_video", model_id="tiny-sam3", face="tiny")
PROMPTS = ["dog", "guitar"]


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[FrameRef]:
    """36 PNG frames of one noise picture panning right by 2 px a frame: the random tiny model finds the same
    instances on every frame, so its tracks persist and their number stays put."""
    folder = tmp_path_factory.mktemp("frames")
    picture = np.random.default_rng(0).integers(0, 255, (60, 96, 3), dtype=np.uint8)
    paths = []
    for k in range(36):
        paths.append(folder / f"{k:05d}.png")
        Image.fromarray(np.roll(picture, 2 * k, axis=1)).save(paths[-1])
    return frame_refs_from_files(paths, [float(k) for k in range(36)])


@pytest.fixture
def segmenter() -> sam3_detect_track.Sam3VideoSegmenter:
    return ModelRegistry("cpu").get(VIDEO_SEGMENTER_TINY)


def _same(ours: Sequence[VideoInstances], theirs: Sequence[VideoInstances]) -> bool:
    return len(ours) == len(theirs) and all(
        a.frame_index == b.frame_index
        and a.object_ids == b.object_ids
        and a.prompts == b.prompts
        and np.array_equal(a.masks, b.masks)
        and np.allclose(a.scores, b.scores)
        and np.allclose(a.tracker_scores, b.tracker_scores)
        for a, b in zip(ours, theirs, strict=True)
    )


@pytest.mark.parametrize("hotstart", ["default", "off"])
def test_streamed_answers_equal_transformers_whole_video_api(segmenter, frames, hotstart) -> None:
    """With hotstart (15 frames held back, tracks removed from the buffered answers too) and without it (every
    track kept): the streamed, pruned session answers exactly as Sam3VideoModel.propagate_in_video_iterator over
    the whole video with processor.postprocess_outputs, as transformers documents it."""
    if hotstart == "off":
        segmenter.model.hotstart_delay = 0
    frames = frames[:20]
    ours = list(segmenter.segment_video(frames, PROMPTS, threshold=0.0))
    model, processor = segmenter.model, segmenter.processor
    with sam3_detect_track._thresholds(model, 0.0):
        session = processor.init_video_session(video=[np.asarray(Image.open(r.path)) for r in frames])
        processor.add_text_prompt(session, PROMPTS)
        outputs = list(model.propagate_in_video_iterator(session))
    theirs = []
    for ref, out in zip(frames, outputs, strict=True):
        post = processor.postprocess_outputs(session, out)
        ids = post["object_ids"].tolist()
        prompt_of = {i: text for text, obj_ids in post["prompt_to_obj_ids"].items() for i in obj_ids}
        scores = post["scores"].numpy()
        tracker = np.array([out.obj_id_to_tracker_score.get(i, s) for i, s in zip(ids, scores, strict=True)])
        masks = post["masks"].numpy()
        theirs.append(VideoInstances(ref.index, ids, [prompt_of[i] for i in ids], masks, scores, tracker))
    assert _same(ours, theirs)
    shown = [len(found.object_ids) for found in ours]
    assert sum(shown) > 0 and (hotstart == "default") == (0 in shown)  # hotstart hid the tracks it removed


def test_pruning_is_exact_and_memory_stays_flat(segmenter, frames) -> None:
    """Every track kept (hotstart off, 16 objects over 36 frames): pruned answers equal the unpruned session's,
    the session holds one frame's pixels, and what it holds over 18 frames (past the 16-frame memory window) is
    what it holds over 36."""
    segmenter.model.hotstart_delay = 0
    segmenter.prune = False
    full = list(segmenter.segment_video(frames, PROMPTS, threshold=0.0))
    unpruned_bytes = segmenter.stats.peak_session_bytes
    segmenter.prune = True
    peaks = []
    for n in (18, 36):
        segmenter.stats = type(segmenter.stats)()
        pruned = list(segmenter.segment_video(frames[:n], PROMPTS, threshold=0.0))
        peaks.append(segmenter.stats.peak_session_bytes)
        assert segmenter.stats.peak_session_frames == 1 and segmenter.stats.frames == n
    assert _same(pruned, full) and min(len(f.object_ids) for f in full) >= 2
    assert peaks[0] == peaks[1] and unpruned_bytes > 5 * peaks[1]


def test_refine_rounds_skip_the_vit_on_frames_seen(segmenter, frames) -> None:
    """Calls over the same frames with another threshold or other prompts (the agent's refine rounds) run no ViT
    pass and answer as an adapter without the cache does; frames past the cache's capacity are encoded again."""
    model, processor = segmenter.model, segmenter.processor
    warm, cold = (
        sam3_detect_track.Sam3VideoSegmenter(segmenter.spec, model, processor, "cpu", Sam3VisionCache(n))
        for n in (4, 0)
    )
    for threshold, prompts in ((0.0, PROMPTS), (0.25, ["guitar"]), (0.0, ["guitar", "dog"])):
        ours = list(warm.segment_video(frames[:4], prompts, threshold))
        assert any(found.object_ids for found in ours)
        assert _same(ours, list(cold.segment_video(frames[:4], prompts, threshold)))
    cache = warm.vision_cache
    assert (cache.passes, cache.reused, cold.vision_cache.passes) == (4, 8, 12)
    list(warm.segment_video(frames[:6], PROMPTS, 0.0))  # 2 new frames
    assert (cache.passes, cache.reused) == (6, 12)
    list(warm.segment_video(frames[:6], PROMPTS, 0.0))  # 6 frames in turn through 4 places: none left
    assert (cache.passes, cache.reused) == (12, 12) and len(cache.entries) == 4


def test_release_keeps_what_the_tracker_reads_going_forward() -> None:
    """After frame 40 (M = 7 memories, P = 16 pointers, C = 4 conditioning frames): the 4 latest conditioning
    frames stay whole; an older one within P keeps its pointer only past M; older ones go; tracked frames keep
    memories within M, pointers within P; the frame's own masks, pixels, mask prompt and bookkeeping go."""
    tracker = sam3_video.tiny_config()
    session = sam3_detect_track.Sam3DetectTrackSession(60)
    session.obj_id_to_idx(7)
    full = {"pred_masks": 1, "high_res_masks": 1, "object_pointer": 1, "maskmem_features": 1, "maskmem_pos_enc": 1}
    outputs = session.output_dict_per_obj[0]
    outputs["cond_frame_outputs"] = {f: dict(full) for f in (2, 20, 30, 33, 36, 38, 40)}
    outputs["non_cond_frame_outputs"] = {f: dict(full) for f in (10, 24, 25, 34, 35, 39)}
    session.processed_frames = {40: torch.zeros(1)}
    session.mask_inputs_per_obj[0] = {40: torch.zeros(1)}
    session.frames_tracked_per_obj[0] = {39: {}, 40: {}}
    session.obj_id_to_tracker_score_frame_wise.update({39: {7: 0.9}, 40: {7: 0.8}})
    session.suppressed_obj_ids.update({39: set(), 40: set()})
    sam3_detect_track._release(session, 40, tracker)
    pointer_only = {"pred_masks", "high_res_masks", "object_pointer"}
    cond = outputs["cond_frame_outputs"]
    assert sorted(cond) == [30, 33, 36, 38, 40]  # 2 and 20: P or more frames back, not among the 4 latest
    assert set(cond[30]) == pointer_only and set(cond[33]) == set(full)  # 30: M or more back; 33: among the latest
    assert set(cond[36]) == set(full) and set(cond[40]) == set(full) - {"pred_masks", "high_res_masks"}
    tracked = outputs["non_cond_frame_outputs"]
    assert sorted(tracked) == [25, 34, 35, 39] and set(tracked[25]) == pointer_only and set(tracked[34]) == set(full)
    assert session.processed_frames == {} and session.mask_inputs_per_obj[0] == {}
    assert list(session.frames_tracked_per_obj[0]) == [39]
    assert list(session.obj_id_to_tracker_score_frame_wise) == [40] and list(session.suppressed_obj_ids) == [40]


class ScriptedVideoModel:
    """A VideoSegmenter answering every frame with a 'dog' (object 3) and a 'drum' (object 5, empty on frame 1)."""

    spec = VIDEO_SEGMENTER_TINY

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], float, int | None]] = []

    def segment_video(self, frames, prompts, threshold, max_side=None) -> Iterator[VideoInstances]:
        self.calls.append((list(prompts), threshold, max_side))
        for ref in frames:
            masks = np.zeros((2, ref.height, ref.width), bool)
            masks[0, 2:6, 3:9] = True
            masks[1, 1:3, 1:3] = ref.index != 1
            scores = np.array([0.9, 0.6], np.float32)
            yield VideoInstances(ref.index, [3, 5], ["dog", "drum"], masks, scores, np.array([0.8, 0.7], np.float32))


def test_segment_video_prompts_the_clip_and_answers_each_frame_its_phrases(frames) -> None:
    refs = frames[:3]
    model = ScriptedVideoModel()
    out = list(segment_video(model, refs, [["dog", "drum"], ["drum", "dog"], ["dog"]], 0.4, max_side=640))
    assert model.calls == [(["dog", "drum"], 0.4, 640)]  # each phrase once, in first-asked order
    assert [[(o.phrase, o.object_id) for o in f.objects] for f in out] == [
        [("dog", 3), ("drum", 5)],
        [("dog", 3)],  # the drum's mask is empty on frame 1
        [("dog", 3)],  # frame 2 does not ask for the drum
    ]
    dog = out[0].objects[0]
    assert dog.holds_rle and dog.box == (3.0, 2.0, 9.0, 6.0) and dog.area == 24
    assert (dog.box_score, dog.mask_score) == (pytest.approx(0.9), pytest.approx(0.8))
    assert decode_rle(dog.rle).shape == (refs[0].height, refs[0].width)
    silent = list(segment_video(model, refs, [[], [" "], []], 0.4))
    assert model.calls[1] == ([], 0.4, None) and [f.objects for f in silent] == [(), (), ()]
    with pytest.raises(ValueError, match="2 phrase lists for 3 frames"):
        list(segment_video(model, refs, [["dog"], ["dog"]], 0.4))


def test_threshold_sets_detection_and_new_object_levels_for_the_call_only(segmenter, frames, monkeypatch) -> None:
    model = segmenter.model
    seen = []
    forward = model._det_track_one_frame

    def spy(*args, **kwargs):
        seen.append((model.score_threshold_detection, model.new_det_thresh))
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "_det_track_one_frame", spy)
    list(segmenter.segment_video(frames[:2], PROMPTS, threshold=0.45))
    assert not any(f.object_ids for f in segmenter.segment_video(frames[:2], PROMPTS, threshold=1.0))
    silent = list(segmenter.segment_video(frames[:2], [], threshold=0.0))  # no prompt: the model is not run
    assert [(f.frame_index, f.masks.shape) for f in silent] == [(0, (0, 60, 96)), (1, (0, 60, 96))]
    assert len(seen) == 4 and segmenter.stats.frames == 4
    assert seen[:2] == [(0.45, pytest.approx(0.65))] * 2 and seen[2:] == [(1.0, 1.0)] * 2  # margin 0.7 - 0.5
    assert (model.score_threshold_detection, model.new_det_thresh) == (0.5, 0.7)


def test_random_config_is_facebook_sam3_as_a_video_model() -> None:
    config = sam3_detect_track.random_config()
    assert config.detector_config.to_dict() == sam3.random_config().to_dict()
    assert config.tracker_config.to_dict() == sam3_video.random_config().to_dict()
    assert config.low_res_mask_size == 288 and config.image_size == 1008 and config.hotstart_delay == 15
    with torch.device("meta"):
        model = sam3_detect_track.Sam3VideoModel(config)
    assert 850e6 < sum(p.numel() for p in model.parameters()) < 870e6  # the detector's 840 M and the tracker's heads


def test_facebook_sam3_layout_loads_as_the_real_face(segmenter, frames, tmp_path: Path) -> None:
    """A saved Sam3VideoModel and Sam3VideoProcessor (facebook/sam3's layout) load through the registry by folder
    and answer as the model they were saved from."""
    segmenter.model.save_pretrained(tmp_path)
    segmenter.processor.save_pretrained(tmp_path)
    real = ModelRegistry("cpu").get(VIDEO_SEGMENTER_TINY.model_copy(update={"model_id": str(tmp_path), "face": "real"}))
    assert isinstance(real, sam3_detect_track.Sam3VideoSegmenter)
    expected = list(segmenter.segment_video(frames[:6], PROMPTS, threshold=0.0))
    assert _same(list(real.segment_video(frames[:6], PROMPTS, threshold=0.0)), expected)


def test_video_mode_needs_sam3_and_loads_only_its_video_model() -> None:
    settings = with_segmentation(base_profile("sam3"), "video")
    assert settings.video_segmenter == ModelSpec(role="video_segmenter", family="sam3_video", model_id="facebook/sam3")
    assert [s.role for s in settings.model_specs()] == ["captioner", "tagger", "video_segmenter"]
    with pytest.raises(InputError, match="needs SAM 3 as the segmenter"):
        with_segmentation(base_profile("tiny"), "video")
    with pytest.raises(InputError, match="not one of image, propagate, video"):
        with_segmentation(base_profile("sam3"), "track")


def test_sam3_profile_video_mode_runs_end_to_end(tmp_path: Path) -> None:
    """`--profile sam3 --segmenter sam3:tiny --segmentation video --phrases dog`: grounding defers every frame, SAM 3's
    video model finds and tracks the dog on every frame, no image model is loaded, masks land in the run folder."""
    clip = write_test_clip(tmp_path / "dog.mp4", seconds=4.0, size=(80, 60))
    args = [str(clip), "--profile", "sam3", "--graph", "pipeline", "--segmenter", "sam3:tiny", "--phrases", "dog"]
    args += ["--segmentation", "video", "--box-threshold", "0", "--no-overlay"]
    settings = settings_from_args(build_parser().parse_args(args))
    registry = ModelRegistry("cpu")
    registry.get(settings.video_segmenter).model.hotstart_delay = 0  # keep every track of the random model
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    state = run_graph(run_dir, settings, VideoSource(kind="video", path=str(clip)), registry=registry,
                      progress=lambda *_: None)  # fmt: skip
    assert all(d["deferred"]["phrases"] == ["dog"] for d in state["detections"])
    assert {key[0] for key in registry._adapters} == {"video_segmenter"}
    [call] = [r for r in read_trace(run_dir / "trace.jsonl") if r["kind"] == "model_call"]
    assert call["name"] == "video_segmenter" and call["frames"] == 4 and call["threshold"] == 0.0
    assert min(call["objects"]) >= 1
    for k in range(1, 5):
        mask = read_mask_png(run_dir / "masks" / f"dog_{k}.png")
        assert mask.shape == (60, 80) and np.any(mask), k


def test_agent_refine_rounds_in_video_mode_run_the_vit_once_per_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--profile sam3 --segmentation video` in the agent: each refine round runs SAM 3's video model over the clip
    again, and only the first round runs its ViT on the frames, through the cache of the checkpoint's shared ViT."""
    from agent import solve

    spec = ModelSpec(role="video_segmenter", family="sam3_video", model_id="tiny-sam3", face="tiny")
    shared = sam3_detect_track.load_sam3_video_segmenter(spec, "cpu").vision_cache  # what `sam3:tiny` runs on
    shared.clear()  # whatever an earlier test left there
    before = (shared.passes, shared.reused)
    caches = []
    features = Sam3VisionCache.features

    def recorded(cache: Sam3VisionCache, *args):
        caches.append(cache)
        return features(cache, *args)

    monkeypatch.setattr(Sam3VisionCache, "features", recorded)
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=3.0, size=(64, 48))
    out = tmp_path / "run"
    args = [str(clip), "--profile", "sam3", "--segmenter", "sam3:tiny", "--segmentation", "video", "--critic", "none"]
    args += ["--phrases", "dog", "--no-overlay", "--no-cache", "--device", "cpu", "--out", str(out)]
    assert solve.main(args) == 0
    capsys.readouterr()
    rounds = len(read_json(out / "result.json")["agent"]["rounds"])
    assert rounds >= 2  # the tiny model's tracks fail the checks at first: the planner refines
    assert set(caches) == {shared}
    assert (shared.passes - before[0], shared.reused - before[1]) == (3, 3 * (rounds - 1))
