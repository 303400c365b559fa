"""Meta's SAM 2 video predictor as the sam2_meta propagator (tools/models/sam2_meta.py): streaming equals Meta's own
whole-video API, its state is init_state's, Meta's checkpoints load by name, `--propagator` picks it, and propagate
mode runs end to end through agent.solve. The shared tracker contract (order, streaming, bounded memory, exact
pruning) is checked by tests/test_propagation.py, whose `propagator` fixture includes this tracker. Offline, CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from agent import solve
from agent.profiles import base_profile, propagator_for, with_segmentation
from tests.clipfactory import write_test_clip
from tests.test_propagation import (
    BOXES,
    HEIGHT,
    META_TINY,
    TRACKERS,
    WIDTH,
    one_thread,  # noqa: F401  (autouse: tiny models run fastest on one thread)
)
from tools.errors import InputError, ModelUnavailableError
from tools.frames import FrameRef, frame_refs_from_files
from tools.models import sam2_meta
from tools.models.base import ModelSpec
from tools.models.registry import ModelRegistry, ensure_weights_available
from tools.runfiles import read_json, read_mask_png
from tools.tracing import read_trace


@pytest.fixture(scope="module")
def propagator() -> sam2_meta.MetaSam2VideoPropagator:
    return TRACKERS.get(META_TINY)


@pytest.fixture(scope="module")
def jpeg_clip(tmp_path_factory: pytest.TempPathFactory) -> list[FrameRef]:
    """6 JPEG frames named as Meta's init_state reads a folder (00000.jpg, ...): a bright square moving right."""
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.RandomState(1)
    paths = []
    for k in range(6):
        pixels = rng.randint(0, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
        pixels[12:34, 6 + 4 * k : 30 + 4 * k] = 250
        paths.append(folder / f"{k:05d}.jpg")
        Image.fromarray(pixels).save(paths[-1], quality=95)
    return frame_refs_from_files(paths, [k * 0.5 for k in range(6)])


def _meta_whole_video(predictor, folder: Path, seed: int, ids: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Meta's documented way: init_state on the frame folder, a box per object on the seed frame, propagate_in_video
    forward then in reverse. Frame index -> (bool masks (N, H, W), float32 presence scores (N,))."""
    state = predictor.init_state(str(folder))
    for obj_id, box in zip(ids, BOXES, strict=True):
        predictor.add_new_points_or_box(state, frame_idx=seed, obj_id=obj_id, box=box)
    reference = {}
    for reverse in (False, True):
        for index, _, logits in predictor.propagate_in_video(state, start_frame_idx=seed, reverse=reverse):
            outputs = state["output_dict_per_obj"].values()
            stored = [o["cond_frame_outputs"].get(index) or o["non_cond_frame_outputs"][index] for o in outputs]
            scores = torch.sigmoid(torch.cat([s["object_score_logits"].reshape(-1) for s in stored])).numpy()
            reference.setdefault(index, ((logits[:, 0] > 0).numpy(), scores))
    return reference


def test_equals_metas_whole_video_api(propagator: sam2_meta.MetaSam2VideoPropagator, jpeg_clip) -> None:
    """Streaming the frames through a FrameFeed and pruning the state change what is held, not the answer."""
    reference = _meta_whole_video(propagator.predictor, Path(jpeg_clip[0].path).parent, 2, [4, 9])
    ours = list(propagator.propagate(jpeg_clip, 2, BOXES, [4, 9]))
    assert [index for index, _, _ in ours] == [2, 3, 4, 5, 1, 0]
    for index, masks, scores in ours:
        assert masks.shape == (2, HEIGHT, WIDTH) and 0 < masks.sum() < masks.size
        assert np.array_equal(masks, reference[index][0]) and np.array_equal(scores, reference[index][1])


def test_stream_state_is_init_states(propagator: sam2_meta.MetaSam2VideoPropagator, jpeg_clip) -> None:
    """The state the adapter builds has init_state's keys and values, but the frames (lazy) and the warm-up's
    cached features of frame 0; its frames are the pixels init_state decodes."""
    predictor = propagator.predictor
    loaded = predictor.init_state(str(Path(jpeg_clip[0].path).parent))
    feed = sam2_meta.FrameFeed(jpeg_clip, predictor.image_size, None)
    streamed = sam2_meta.stream_state(predictor, feed, HEIGHT, WIDTH)
    assert streamed.keys() == loaded.keys()
    lazy = {"images", "cached_features"}
    assert {k: v for k, v in streamed.items() if k not in lazy} == {k: v for k, v in loaded.items() if k not in lazy}
    assert len(feed) == len(loaded["images"]) == 6
    assert all(torch.equal(feed[k], loaded["images"][k]) for k in range(6))


def test_release_knows_every_stored_output(propagator: sam2_meta.MetaSam2VideoPropagator, jpeg_clip) -> None:
    """What Meta stores per frame is what sam2_video.release_outputs drops by name (memories, low-res masks) or
    keeps (pointer, score): an output sam2 adds in a later version would show here first."""
    predictor = propagator.predictor
    state = predictor.init_state(str(Path(jpeg_clip[0].path).parent))
    predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=BOXES[0])
    for _ in predictor.propagate_in_video(state, start_frame_idx=0, max_frame_num_to_track=2):
        pass
    outputs = state["output_dict_per_obj"][0]
    for entry in [*outputs["cond_frame_outputs"].values(), *outputs["non_cond_frame_outputs"].values()]:
        assert set(entry) == {"maskmem_features", "maskmem_pos_enc", "pred_masks", "obj_ptr", "object_score_logits"}


def test_metas_checkpoints_load_by_name(tmp_path: Path) -> None:
    """A Meta .pt named as Meta names it loads through the real face with that name's config; a checkpoint of another
    architecture, an unknown name or a missing file is one clear error."""
    random_spec = ModelSpec(role="propagator", family="sam2_meta", model_id="facebook/sam2.1-hiera-tiny", face="random")
    built = sam2_meta.build_predictor(random_spec, "cpu")
    assert 38e6 < sum(p.numel() for p in built.parameters()) < 40e6 and built.image_size == 1024
    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": built.state_dict()}, checkpoint)
    real = ModelSpec(role="propagator", family="sam2_meta", model_id=str(checkpoint))
    loaded = ModelRegistry("cpu").get(real).predictor
    assert all(
        torch.equal(a, b) for a, b in zip(built.state_dict().values(), loaded.state_dict().values(), strict=True)
    )
    assert loaded.fill_hole_area == 0

    tiny = TRACKERS.get(META_TINY).predictor
    mismatched = tmp_path / "other" / "sam2.1_hiera_tiny.pt"
    mismatched.parent.mkdir()
    torch.save({"model": tiny.state_dict()}, mismatched)
    with pytest.raises(ModelUnavailableError, match=r"does not match Meta's sam2\.1_hiera_t"):
        sam2_meta.build_predictor(real.model_copy(update={"model_id": str(mismatched)}), "cpu")
    not_a_checkpoint = tmp_path / "notes" / "sam2.1_hiera_tiny.pt"
    not_a_checkpoint.parent.mkdir()
    not_a_checkpoint.write_text("not weights")
    with pytest.raises(ModelUnavailableError, match="is not a sam2 checkpoint"):
        sam2_meta.build_predictor(real.model_copy(update={"model_id": str(not_a_checkpoint)}), "cpu")
    with pytest.raises(InputError, match="the checkpoint's name tells its architecture"):
        sam2_meta.build_predictor(real.model_copy(update={"model_id": str(tmp_path / "mine.pt")}), "cpu")
    with pytest.raises(InputError, match="a hub id Meta's sam2 knows"):
        sam2_meta.build_predictor(real.model_copy(update={"model_id": "someone/sam2-finetune"}), "cpu")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        sam2_meta.build_predictor(real.model_copy(update={"model_id": str(tmp_path / "sam2.1_hiera_large.pt")}), "cpu")


def test_uncached_meta_checkpoint_names_the_file_to_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Preflight looks for Meta's .pt in the hub cache, not the transformers config.json the same repository holds
    (cached by the default profile's SAM2): the error names the file to download and the option that takes a copy."""
    from huggingface_hub import constants

    spec = ModelSpec(role="propagator", family="sam2_meta", model_id="facebook/sam2.1-hiera-small")
    snapshot = tmp_path / "models--facebook--sam2.1-hiera-small" / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        ensure_weights_available(spec)
    assert "`hf download facebook/sam2.1-hiera-small sam2.1_hiera_small.pt`" in str(err.value)
    assert "a local copy of sam2.1_hiera_small.pt with --propagator sam2_meta:PATH" in str(err.value)
    (snapshot / "sam2.1_hiera_small.pt").write_bytes(b"")
    ensure_weights_available(spec)  # cached: no error
    relative = spec.model_copy(update={"model_id": "checkpoints/sam2.1_hiera_small.pt"})
    with pytest.raises(ModelUnavailableError, match=r"'checkpoints/sam2\.1_hiera_small\.pt' does not exist"):
        ensure_weights_available(relative)
    with pytest.raises(InputError, match="the checkpoint's name tells its architecture"):
        ensure_weights_available(relative.model_copy(update={"model_id": "checkpoints/mine.pt"}))


def test_propagator_choice() -> None:
    """--propagator: a bare family runs the segmenter's checkpoint, FAMILY:ID another; a family that cannot run the
    segmenter's checkpoint, or the flag outside propagate mode, is an input error."""
    default = base_profile("default")
    meta = propagator_for(default, "sam2_meta")
    assert (meta.family, meta.model_id, meta.face) == ("sam2_meta", "facebook/sam2.1-hiera-small", "real")
    assert propagator_for(default).family == "sam2_video"
    assert propagator_for(base_profile("tiny"), "sam2_meta") == META_TINY.model_copy(update={"model_id": "tiny-sam2"})
    local = propagator_for(default, "sam2_meta:/models/sam2.1_hiera_large.pt")
    assert (local.family, local.model_id) == ("sam2_meta", "/models/sam2.1_hiera_large.pt")
    with pytest.raises(InputError, match="cannot run the segmenter's sam3 checkpoint"):
        propagator_for(base_profile("sam3"), "sam2_meta")
    with pytest.raises(InputError, match="chooses the tracker of --segmentation propagate"):
        with_segmentation(default, "image", "sam2_meta")


def test_solve_propagates_with_metas_predictor(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As a user runs it: `python -m agent.solve clip.mp4 --profile tiny --segmentation propagate --propagator
    sam2_meta`; the run records the tracker, writes one mask per frame, and prints no progress bars of Meta's."""
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=3.0, size=(64, 48))
    run = tmp_path / "run"
    args = [str(clip), "--profile", "tiny", "--graph", "pipeline", "--phrases", "dog", "--no-overlay", "--no-cache"]
    code = solve.main([*args, "--segmentation", "propagate", "--propagator", "sam2_meta", "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "propagate in video" not in err and "it/s" not in err  # Meta's tqdm bars stay off the run's stderr
    result = read_json(run / "result.json")
    trackers = [m for m in result["models"] if m["role"] == "propagator"]
    assert [(m["family"], m["face"]) for m in trackers] == [("sam2_meta", "tiny")]
    tracked = [r for r in read_trace(run / "trace.jsonl") if r["kind"] == "model_call" and r["name"] == "propagator"]
    assert sum(r["frames"] for r in tracked) == 3  # Meta's tracker ran over every frame
    masks = sorted((run / "masks").iterdir())
    assert [p.name for p in masks] == [f"clip_{k}.png" for k in range(1, 4)]
    assert all(read_mask_png(p).shape == (48, 64) for p in masks)
