"""SAM 3's tracker as the sam3 profile's propagator (tools/models/sam3_video.py): what its session stores is what the
shared propagator prunes, facebook/sam3's checkpoint layout loads, the profile picks it, and propagate mode runs
end to end with tiny SAM 3 faces. Streaming, bounded memory and exact pruning are checked for both trackers by
tests/test_propagation.py (its `propagator` fixture runs each test on SAM2's and SAM 3's tracker). Offline, CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Sam3TrackerVideoConfig, Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor

from agent.cli_settings import settings_from_args
from agent.profiles import base_profile, propagator_for
from agent.runner import run_graph
from agent.solve import build_parser
from graphs.pipeline import VideoSource
from tests.clipfactory import write_test_clip
from tests.test_propagation import (
    SAM3_VIDEO_TINY,
    VIDEO_TINY,
    _run,
    _write_clip,
    one_thread,  # noqa: F401  (autouse: tiny models run fastest on one thread)
)
from tools.errors import InputError
from tools.frames import FrameRef, load_frame
from tools.models import sam2_video, sam3, sam3_detect_track, sam3_roles, sam3_video
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry
from tools.models.sam3_vision import Sam3VisionCache
from tools.propagation import MemoizedPropagator
from tools.runfiles import read_mask_png
from tools.tracing import read_trace

STORED_KEYS = {
    "pred_masks",
    "high_res_masks",
    "object_pointer",
    "object_score_logits",
    "maskmem_features",
    "maskmem_pos_enc",
}
"""Every per-frame output transformers 5.24 stores (sam2_video's _release names what it drops of these)."""


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[FrameRef]:
    return _write_clip(tmp_path_factory.mktemp("frames"), 6)


def _stored_state(
    spec: ModelSpec, frames: list[FrameRef], monkeypatch: pytest.MonkeyPatch
) -> tuple[type, set[str], set[str]]:
    """(session class, the session's attributes, the keys of every per-frame output) seen by _release while
    `spec`'s tiny tracker propagates `frames` from frame 2."""
    seen: dict = {"keys": set()}
    release = sam2_video._release

    def recording_release(session, done, seed, config) -> None:
        seen["session"] = session
        for outputs in session.output_dict_per_obj.values():
            for entries in (outputs["cond_frame_outputs"], outputs["non_cond_frame_outputs"]):
                seen["keys"] |= {key for entry in entries.values() for key in entry}
        release(session, done, seed, config)

    monkeypatch.setattr(sam2_video, "_release", recording_release)
    _run(ModelRegistry("cpu").get(spec), frames, seed=2)
    return type(seen["session"]), set(vars(seen["session"])), seen["keys"]


def test_sam3_tracker_session_stores_what_pruning_knows(frames, monkeypatch) -> None:
    """The SAM 3 tracker's session is its own class (with the clip length) but holds SAM2's fields and per-frame
    outputs, so _release drops the same spent keys and session_bytes walks all of its tensors."""
    sam3_class, sam3_fields, sam3_keys = _stored_state(SAM3_VIDEO_TINY, frames, monkeypatch)
    _, sam2_fields, sam2_keys = _stored_state(VIDEO_TINY, frames, monkeypatch)
    assert sam3_class is sam3_video.Sam3TrackerClipSession
    assert sam3_fields == sam2_fields and sam3_keys == sam2_keys == STORED_KEYS


def test_facebook_sam3_checkpoint_layout_loads_the_tracker(frames, tmp_path: Path) -> None:
    """facebook/sam3 is a Sam3VideoModel (detector + tracker) with a Sam3VideoProcessor: the real face's
    from_pretrained takes the tracker's config from tracker_config, its ViT from the detector's backbone and its
    neck from tracker_neck, exactly the saved tensors, and the processor's image and video parts."""
    tracker = sam3_video.tiny_config()
    detector = sam3.tiny_config()
    detector.vision_config = tracker.vision_config  # one backbone for both, as in the checkpoint
    checkpoint = Sam3VideoModel(Sam3VideoConfig(detector_config=detector, tracker_config=tracker)).eval()
    checkpoint.save_pretrained(tmp_path)
    processor = sam3_video._processor(sam3.TINY_IMAGE_SIZE)
    Sam3VideoProcessor(processor.image_processor, processor.video_processor, sam3.clip_tokenizer()).save_pretrained(
        tmp_path
    )
    spec = SAM3_VIDEO_TINY.model_copy(update={"model_id": str(tmp_path), "face": "real"})
    real = ModelRegistry("cpu").get(spec)
    assert isinstance(real, sam3_video.Sam3TrackerVideoPropagator)
    saved = checkpoint.state_dict()
    renamed = {
        "vision_encoder.backbone.": "detector_model.vision_encoder.backbone.",
        "vision_encoder.neck.": "tracker_neck.",
    }
    for key, value in real.model.state_dict().items():
        prefix = next((p for p in renamed if key.startswith(p)), None)
        source = renamed[prefix] + key[len(prefix) :] if prefix else f"tracker_model.{key}"
        assert torch.equal(value, saved[source]), key
    assert real.processor.target_size == sam3.TINY_IMAGE_SIZE
    assert [i for i, _, _ in _run(real, frames, seed=1)] == [1, 2, 3, 4, 5, 0]
    # The detector from the same checkpoint (Sam3Model.from_pretrained("facebook/sam3")) runs on the tracker's ViT.
    detector = sam3.load_sam3(spec.model_copy(update={"role": "text_segmenter", "family": "sam3"}), "cpu")
    assert detector.model.vision_encoder.backbone is real.model.vision_encoder.backbone
    assert detector.vision_cache is real.vision_cache


def _spec(role: str, family: str, **updates) -> ModelSpec:
    return ModelSpec(role=role, family=family, model_id="sam3-shared-vit-test", face="tiny", **updates)


def test_sam3_models_of_one_checkpoint_share_one_vit(frames) -> None:
    """The detector (grounder and segmenter roles), the tracker and the video model of one checkpoint, device and
    dtype hold one ViT and one cache of its outputs: the tracker does not encode the frames the detector grounded,
    the detector does not encode the frames the tracker tracked, and the answers are those of a tracker with its
    own ViT and no cache."""
    detector = sam3_roles.load_sam3_grounder(_spec("grounder", "sam3"), "cpu").model
    tracker = sam3_video.load_sam3_video(_spec("propagator", "sam3_tracker_video"), "cpu")
    video = sam3_detect_track.load_sam3_video_segmenter(_spec("video_segmenter", "sam3_video"), "cpu")
    vit = detector.model.vision_encoder.backbone
    assert tracker.model.vision_encoder.backbone is vit and video.model.detector_model.vision_encoder.backbone is vit
    assert tracker.vision_cache is detector.vision_cache is video.vision_cache
    held = {id(p) for m in (detector.model, tracker.model, video.model) for p in m.parameters()}
    each = sum(len(list(m.parameters())) for m in (detector.model, tracker.model, video.model))
    assert len(held) == each - 2 * len(list(vit.parameters()))

    cache = tracker.vision_cache
    cache.clear()
    before = (cache.passes, cache.reused)
    for ref in frames[1:3]:  # the seed candidates the detector grounds, decoded as the tracker decodes them
        detector.segment_text(load_frame(ref, 64)[0], ["dog"], threshold=0.0)
    tracked = _run(tracker, frames, seed=1)
    assert (cache.passes - before[0], cache.reused - before[1]) == (len(frames), 2)
    detector.segment_text(load_frame(frames[4], 64)[0], ["dog"], threshold=0.0)  # a drifted frame grounded again
    assert (cache.passes - before[0], cache.reused - before[1]) == (len(frames), 3)

    alone = sam3_video.Sam3TrackerVideoPropagator(tracker.spec, *sam3_video.build_tiny(), "cpu", Sam3VisionCache(0))
    assert alone.model.vision_encoder.backbone is not vit
    for (i1, m1, s1), (i2, m2, s2) in zip(tracked, _run(alone, frames, seed=1), strict=True):
        assert i1 == i2 and np.array_equal(m1, m2) and np.array_equal(s1, s2)


def test_sam3_models_share_a_vit_only_where_it_computes_the_same() -> None:
    """Another checkpoint, or another dtype, gets a ViT of its own."""
    vit = sam3_roles.load_sam3_grounder(_spec("grounder", "sam3"), "cpu").model.model.vision_encoder.backbone
    for spec in (
        _spec("propagator", "sam3_tracker_video", dtype="bfloat16"),
        _spec("propagator", "sam3_tracker_video").model_copy(update={"model_id": "sam3-other-checkpoint"}),
    ):
        assert sam3_video.load_sam3_video(spec, "cpu").model.vision_encoder.backbone is not vit


def test_random_config_is_facebook_sam3s_tracker() -> None:
    """convert_sam3_video_to_hf.py writes Sam3VideoConfig()'s defaults into facebook/sam3: its tracker_config is
    Sam3TrackerVideoConfig() (ViT-L-sized backbone shared with the detector, 1008 px)."""
    written, default = sam3_video.random_config().to_dict(), Sam3TrackerVideoConfig().to_dict()
    assert written == default
    with torch.device("meta"):
        model = sam3_video.Sam3TrackerVideoModel(sam3_video.random_config())
    assert 460e6 < sum(p.numel() for p in model.parameters()) < 470e6  # 446 M of them the ViT
    tiny = sam3_video.tiny_config()
    assert tiny.vision_config.fpn_hidden_size == tiny.memory_attention_hidden_size == sam2_video.TINY_MEMORY_WIDTH
    assert tiny.memory_attention_rope_feat_sizes == [8, 8] and tiny.num_maskmem == 7


def test_propagator_for_picks_the_tracker_of_the_segmenter() -> None:
    sam3_spec = propagator_for(base_profile("sam3"))
    assert (sam3_spec.family, sam3_spec.model_id, sam3_spec.face) == ("sam3_tracker_video", "facebook/sam3", "real")
    assert propagator_for(base_profile("tiny")).family == "sam2_video"
    args = ["clip.mp4", "--profile", "sam3", "--graph", "pipeline", "--segmentation", "propagate", "--phrases", "dog"]
    tiny = settings_from_args(build_parser().parse_args([*args, "--segmenter", "sam3:tiny"]))
    assert tiny.propagator == SAM3_VIDEO_TINY.model_copy(update={"model_id": "tiny-sam3"})
    randomised = settings_from_args(build_parser().parse_args([*args, "--weights", "random"]))
    assert randomised.propagator is not None and randomised.propagator.face == "random"
    pinned = base_profile("sam3")
    segmenter = pinned.segmenter.model_copy(update={"revision": "3c879f3", "dtype": "bfloat16"})
    tracker = propagator_for(pinned.model_copy(update={"segmenter": segmenter}))
    assert (tracker.revision, tracker.dtype) == ("3c879f3", "bfloat16")  # the same checkpoint, as the detector's
    other = base_profile("tiny")
    other = other.model_copy(update={"segmenter": other.segmenter.model_copy(update={"family": "box_fake"})})
    with pytest.raises(InputError, match="SAM2 or SAM 3"):
        propagator_for(other)


def test_sam3_profile_propagate_mode_runs_end_to_end(tmp_path: Path) -> None:
    """The sam3 profile with tiny SAM 3 faces, as `--grounder sam3:tiny --segmenter sam3:tiny --segmentation
    propagate --phrases dog` sets it: SAM 3 grounds the seed candidates by text, its tracker carries the seed's
    instances through every frame, and the masks land in the run folder."""
    clip = write_test_clip(tmp_path / "dog.mp4", seconds=4.0, size=(80, 60))
    args = [str(clip), "--profile", "sam3", "--graph", "pipeline", "--grounder", "sam3:tiny", "--segmenter"]
    args += ["sam3:tiny", "--segmentation", "propagate", "--phrases", "dog", "--box-threshold", "0", "--no-overlay"]
    settings = settings_from_args(build_parser().parse_args(args))
    registry = ModelRegistry("cpu")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cache = registry.get(settings.grounder).model.vision_cache
    cache.clear()  # whatever an earlier test left there
    before = (cache.passes, cache.reused)
    run_graph(run_dir, settings, VideoSource(kind="video", path=str(clip)), registry=registry, progress=lambda *_: None)
    propagator = registry.get(settings.propagator)
    assert isinstance(propagator, MemoizedPropagator)
    assert isinstance(propagator.inner, sam3_video.Sam3TrackerVideoPropagator)
    assert propagator.inner.stats.frames == 4  # every frame tracked once
    # One ViT for grounding and tracking, run once per frame: the grounded seed candidates are not encoded again.
    assert propagator.inner.vision_cache is cache and cache.passes - before[0] == 4 and cache.reused > before[1]
    [call] = [r for r in read_trace(run_dir / "trace.jsonl") if r["kind"] == "model_call" and r["name"] == "propagator"]
    assert call["frames"] == 4 and call["seed_frame"] is not None
    for k in range(1, 5):
        mask = read_mask_png(run_dir / "masks" / f"dog_{k}.png")
        assert mask.shape == (60, 80) and np.any(mask), k  # threshold 0: every query's instance is tracked
