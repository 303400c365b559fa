"""Segmentation modes: SAM2 video propagation with re-grounding of drifted frames, and SAM 3 in both vision roles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.runner import run_graph
from graphs.context import PipelineSettings
from graphs.pipeline import VideoSource
from tests.clipfactory import write_test_clip
from tests.fakes import BoxGrounder, BoxSegmenter, ScriptedCaptioner, box_mask, fake_spec
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry
from tools.models.sam3_roles import load_sam3_grounder, load_sam3_segmenter
from tools.runfiles import read_mask_png
from tools.tracing import read_trace
from tools.translate import LexiconTranslator

DOG_BOX = (0.1, 0.2, 0.5, 0.7)


class ScriptedTracker:
    """Tracks the seed boxes perfectly, except that the object vanishes on `lost_frame` (a drift)."""

    def __init__(self, lost_frame: int) -> None:
        self.spec = fake_spec("propagator")
        self.lost_frame = lost_frame
        self.seeds: list[int] = []

    def propagate(self, frames, seed_frame, boxes, obj_ids, max_side=None):
        self.seeds.append(seed_frame)
        for ref in frames:
            masks = np.zeros((len(boxes), ref.height, ref.width), bool)
            if ref.index != self.lost_frame:
                for mask, (x0, y0, x1, y1) in zip(masks, boxes, strict=True):
                    mask[round(y0) : round(y1), round(x0) : round(x1)] = True
            yield ref.index, masks, np.full(len(boxes), 0.9, np.float32)


def test_propagation_reground_frames_where_the_track_drifted(tmp_path: Path) -> None:
    clip = write_test_clip(tmp_path / "dog.mp4", seconds=4.0, size=(80, 60))
    tracker = ScriptedTracker(lost_frame=2)
    fakes = [ScriptedCaptioner(["a dog barks"]), BoxGrounder({"dog": (DOG_BOX, 0.7)}), BoxSegmenter(), tracker]
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
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    run_graph(run_dir, settings, VideoSource(kind="video", path=str(clip)), registry=registry,
              translator=LexiconTranslator(), progress=lambda *_: None)  # fmt: skip
    assert tracker.seeds == [0]  # every frame scores the same: the earliest is the seed
    assert len(fakes[2].sizes) == 1  # the image segmenter ran once: on the drifted frame only
    want = box_mask(60, 80, DOG_BOX)
    for k in range(1, 5):
        np.testing.assert_array_equal(read_mask_png(run_dir / "masks" / f"dog_{k}.png"), want, err_msg=f"frame {k}")
    [call] = [r for r in read_trace(run_dir / "trace.jsonl") if r["kind"] == "model_call" and r["name"] == "propagator"]
    assert call["regrounded"] == [2] and call["frames"] == 4


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
