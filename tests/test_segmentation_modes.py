"""Segmentation modes: SAM2 video propagation with re-grounding of drifted frames, and SAM 3 in both vision roles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.runner import run_graph
from graphs import stages
from graphs.context import PipelineSettings, RunContext
from graphs.pipeline import VideoSource
from graphs.stages import MaskFile, ground_phrases, load_clip, render_round_overlays, segment_detections
from tests.clipfactory import write_test_clip
from tests.fakes import BoxGrounder, BoxSegmenter, ScriptedCaptioner, ScriptedTracker, box_mask
from tools.datamodel import Detections, FrameMasks, ObjectMask
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry
from tools.models.sam3_roles import load_sam3_grounder, load_sam3_segmenter
from tools.runfiles import read_json, read_mask_png
from tools.tracing import TraceWriter, read_trace
from tools.translate import LexiconTranslator

DOG_BOX = (0.1, 0.2, 0.5, 0.7)


def _propagate_run(
    tmp_path: Path, tracker: ScriptedTracker, seconds: float, grounder: BoxGrounder | None = None, **updates
) -> tuple[Path, list]:
    """A pipeline run in propagate mode over a dog clip; returns the run folder and the fakes (captioner, grounder,
    image segmenter, tracker)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    clip = write_test_clip(tmp_path / "dog.mp4", seconds=seconds, size=(80, 60))
    grounder = grounder or BoxGrounder({"dog": (DOG_BOX, 0.7)})
    fakes = [ScriptedCaptioner(["a dog barks"]), grounder, BoxSegmenter(), tracker]
    registry = ModelRegistry("cpu")
    for fake in fakes:
        registry.install(fake.spec, fake)
    settings = PipelineSettings(
        profile="test",
        captioner=fakes[0].spec,
        tagger=None,
        grounder=fakes[1].spec,
        segmenter=fakes[2].spec,
        segmentation="propagate",
        propagator=tracker.spec,
        **updates,
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_graph(run_dir, settings, VideoSource(kind="video", path=str(clip)), registry=registry,
              translator=LexiconTranslator(), progress=lambda *_: None)  # fmt: skip
    return run_dir, fakes


def _propagator_call(run_dir: Path) -> dict:
    [call] = [r for r in read_trace(run_dir / "trace.jsonl") if r["kind"] == "model_call" and r["name"] == "propagator"]
    return call


@pytest.mark.parametrize(("lost_frame", "grounded_late"), [(2, []), (1, [1])])
def test_propagation_reground_frames_where_the_track_drifted(tmp_path: Path, lost_frame: int, grounded_late) -> None:
    run_dir, (_, grounder, segmenter, tracker) = _propagate_run(tmp_path, ScriptedTracker(lost_frame), 4.0)
    # 3 seed candidates of 4 frames: 0, 2 and 3; frame 1 is grounded only if its track drifts.
    assert grounder.frames_seen == [0, 2, 3, *grounded_late]
    assert tracker.seeds == [0]  # every candidate scores the same: the earliest is the seed
    assert len(segmenter.sizes) == 1  # the image segmenter ran once: on the drifted frame only
    want = box_mask(60, 80, DOG_BOX)
    for k in range(1, 5):
        np.testing.assert_array_equal(read_mask_png(run_dir / "masks" / f"dog_{k}.png"), want, err_msg=f"frame {k}")
    call = _propagator_call(run_dir)
    assert call["regrounded"] == [lost_frame] and call["frames"] == 4 and call["seed_frame"] == 0
    result = json.loads((run_dir / "result.json").read_text())
    # The repaired frame's dog overlaps the tracked dog next to it: it keeps object id 0.
    assert [[o["object_id"] for o in f["objects"]] for f in result["frames"]] == [[0]] * 4
    # Frame 1's deferred grounding stays in the state's detections; a late grounding is in the trace.
    assert [f["index"] for f in result["frames"] if f["detections"].get("deferred")] == [1]
    assert [d["frame_index"] for d in call["grounded_late"]] == grounded_late


def test_seed_frames_zero_grounds_every_frame_and_no_candidate_boxes_grounds_the_rest(tmp_path: Path) -> None:
    run_dir, (_, grounder, _, _) = _propagate_run(tmp_path / "all", ScriptedTracker(lost_frame=-1), 4.0, seed_frames=0)
    assert grounder.frames_seen == [0, 1, 2, 3]

    class LateDog(BoxGrounder):
        """The dog appears in frame 1 only: no seed candidate (0, 2, 3) sees it."""

        def detect(self, images, phrases, frame_indices, box_threshold, text_threshold):
            found = super().detect(images, phrases, frame_indices, box_threshold, text_threshold)
            return [d if d.frame_index == 1 else Detections.empty(d.frame_index) for d in found]

    late = LateDog({"dog": (DOG_BOX, 0.7)})
    run_dir, (_, _, _, tracker) = _propagate_run(tmp_path / "late", ScriptedTracker(lost_frame=-1), 4.0, late)
    assert late.frames_seen == [0, 2, 3, 1] and tracker.seeds == [1]
    assert _propagator_call(run_dir)["seed_frame"] == 1


def _round_context(tmp_path: Path, tracker: ScriptedTracker) -> tuple[RunContext, list[dict]]:
    """A propagate-mode run context over fakes (dog grounder, box segmenter, `tracker`) and a loaded 3 s clip."""
    grounder, segmenter = BoxGrounder({"dog": (DOG_BOX, 0.7)}), BoxSegmenter()
    registry = ModelRegistry("cpu")
    for fake in (grounder, segmenter, tracker):
        registry.install(fake.spec, fake)
    settings = PipelineSettings(profile="test", captioner=None, tagger=None, grounder=grounder.spec,
                                segmenter=segmenter.spec, segmentation="propagate",
                                propagator=tracker.spec)  # fmt: skip
    ctx = RunContext(settings, registry, None, tmp_path, TraceWriter(tmp_path / "trace.jsonl"), progress=lambda *_: 0)
    clip = write_test_clip(tmp_path / "dog.mp4", seconds=3.0, size=(80, 60))
    return ctx, load_clip(ctx, {"kind": "video", "path": str(clip)})["frames"]


def test_a_refine_round_with_the_same_seed_reuses_the_track(tmp_path: Path) -> None:
    tracker = ScriptedTracker(lost_frame=-1)
    ctx, frames = _round_context(tmp_path, tracker)
    phrases = [["dog"]] * len(frames)
    masks = []
    for round_index, box_threshold in enumerate((0.25, 0.3, 0.75)):  # 0.75: the dog's 0.7 box is gone
        detections = ground_phrases(ctx, frames, phrases, box_threshold, 0.25)
        masks.append(segment_detections(ctx, frames, detections, tmp_path / f"masks{round_index}.json"))
    assert tracker.seeds == [0]  # round 1 seeds the same box: the track is reused; round 2 finds nothing to track
    assert masks[0] == masks[1] and all(not f["objects"] for f in masks[2])
    calls = [r for r in read_trace(tmp_path / "trace.jsonl") if r["name"] == "propagator"]
    assert [c.get("reused_track") for c in calls] == [False, True, None]


def test_round_overlays_showing_the_same_masks_are_copied_not_drawn(tmp_path: Path, monkeypatch) -> None:
    ctx, frames = _round_context(tmp_path, ScriptedTracker(lost_frame=-1))

    def masks(dog_boxes: list[tuple[float, float, float, float]]) -> list[FrameMasks]:
        return [
            FrameMasks(k, 60, 80, (ObjectMask(box_mask(60, 80, b), "dog", b, 0.7, 0.9),))
            for k, b in enumerate(dog_boxes)
        ]

    drawn: list[int] = []
    draw = stages.render_overlay
    monkeypatch.setattr(stages, "render_overlay", lambda image, *rest: drawn.append(1) or draw(image, *rest))
    first = render_round_overlays(ctx, frames, masks([DOG_BOX] * 3), 1)
    moved = (0.3, 0.2, 0.7, 0.7)
    second = render_round_overlays(ctx, frames, masks([DOG_BOX, moved, DOG_BOX]), 2)
    assert len(drawn) == 4  # round 2 drew only the frame whose mask moved
    assert [a.read_bytes() == b.read_bytes() for a, b in zip(first, second, strict=True)] == [True, False, True]
    first[0].write_bytes(second[1].read_bytes())  # written over since: no longer the picture of round 1's frame 1
    third = render_round_overlays(ctx, frames, masks([DOG_BOX] * 3), 3)
    assert len(drawn) == 5 and third[0].read_bytes() == second[0].read_bytes()  # the first frame drawn again
    assert third[2].read_bytes() == first[2].read_bytes()


def test_sam3_fills_both_vision_roles_with_one_model() -> None:
    spec = ModelSpec(role="grounder", family="sam3", model_id="tiny-sam3", face="tiny")
    grounder = load_sam3_grounder(spec, "cpu")
    segmenter = load_sam3_segmenter(spec.model_copy(update={"role": "segmenter"}), "cpu")
    assert grounder.model is load_sam3_grounder(spec, "cpu").model  # one model for both roles and calls
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (53, 75, 3), dtype=np.uint8))
    [dets] = grounder.detect([image], [["dog", "cat"]], [3], box_threshold=0.0, text_threshold=0.0)
    assert dets.frame_index == 3 and len(dets) > 0 and set(dets.phrases) <= {"dog", "cat"}
    masks, scores = segmenter.segment(image.copy(), dets.boxes * 1.0001)
    assert masks.shape == (len(dets), 53, 75) and masks.dtype == bool
    np.testing.assert_allclose(scores, dets.scores)
    with pytest.raises(ValueError, match="not found by SAM 3"):
        segmenter.segment(image, np.array([[0, 0, 1, 1]], np.float32))
    with pytest.raises(ValueError, match="ground first"):
        segmenter.segment(Image.new("RGB", (75, 53)), dets.boxes)


def test_mask_file_decodes_on_read_within_its_byte_budget() -> None:
    frames = [
        FrameMasks(k, 60, 80, (ObjectMask(box_mask(60, 80, DOG_BOX), "dog", (8, 12, 40, 42), 0.7, 0.9),)).to_dict()
        for k in range(4)
    ]
    masks = MaskFile(frames, keep_bytes=2 * 60 * 80)  # room for two decoded frames
    seen = list(masks)
    assert len(masks) == 4 and [m.frame_index for m in seen] == [0, 1, 2, 3] and masks[-1].frame_index == 3
    assert masks[3] is seen[3] and masks[0] is not seen[0]  # frame 3 stayed decoded; frame 0 had been dropped
    assert [m.frame_index for m in masks[1:3]] == [1, 2]
    frames[2] = FrameMasks(2, 60, 80).to_dict()  # a repaired frame replaces the dict: read afresh
    assert masks[2].objects == ()
    np.testing.assert_array_equal(masks[1].objects[0].mask, box_mask(60, 80, DOG_BOX))


def test_sam3_agent_refine_rounds_encode_each_frame_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--profile sam3` in the agent: every refine round asks SAM 3 the same frames again, and only the first round
    runs its ViT on them (the later ones read the cached vision features)."""
    from agent import solve

    clip = write_test_clip(tmp_path / "clip.mp4", seconds=3.0, size=(64, 48))
    spec = ModelSpec(role="grounder", family="sam3", model_id="tiny-sam3", face="tiny")
    text_segmenter = load_sam3_grounder(spec, "cpu").model  # the one SAM 3 both roles share in this process
    text_segmenter.vision_cache.clear()  # whatever an earlier test left there
    cache = text_segmenter.vision_cache
    before = (cache.passes, cache.reused)
    out = tmp_path / "run"
    args = [str(clip), "--profile", "sam3", "--grounder", "sam3:tiny", "--segmenter", "sam3:tiny", "--critic", "none"]
    args += ["--phrases", "dog", "--no-overlay", "--no-cache", "--device", "cpu", "--out", str(out)]
    assert solve.main(args) == 0
    capsys.readouterr()
    rounds = read_json(out / "result.json")["agent"]["rounds"]
    assert len(rounds) >= 2  # nothing passes the tiny model's scores at first: the planner refines
    assert cache.passes - before[0] == 3  # one ViT pass per frame
    assert cache.reused - before[1] == 3 * (len(rounds) - 1)
