"""tools/models/video_batching.py: a tracked frame's objects in one batch equal transformers' per-object forward,
in outputs and in what the session stores; every other frame goes through that forward. Tiny faces, CPU.

Tolerance: the batched step runs the same float32 operations with batch N instead of N runs with batch 1, so
matmuls and attention sum in another order: mask and score logits differ by a few float32 steps (at most 7e-9 seen
over 8 frames, on logits of at most 0.02 from the tiny random weights). Later frames read memories that transformers
stores in bfloat16, where such a difference can round a value to the neighbouring bfloat16 step. In float64 the first
tracked frame is bit for bit the same. FLOAT32 allows about 15 times the largest difference seen, and 40 times less
than the spread between the objects' score logits (5e-6); the thresholded masks must be identical. The tiny model's
outputs hardly depend on the order of its object pointers, so the stacked memory is also checked directly, exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import ProcessorMixin
from transformers.utils import ModelOutput

from tests.test_propagation import HEIGHT, VIDEO_TINY, WIDTH, _write_clip, one_thread  # noqa: F401 (autouse)
from tools.frames import FrameRef, load_frame
from tools.models import sam2_video, sam3_video, video_batching
from tools.models.registry import ModelRegistry
from tools.models.video_batching import VideoSession, VideoTracker, track_frame

FLOAT32 = {"rtol": 1e-6, "atol": 1e-7}
BFLOAT16 = {"rtol": 2**-7, "atol": 2**-10}  # one bfloat16 step for values up to 0.25
BOXES = np.array([[5, 6, 40, 30], [30, 12, 70, 50], [2, 25, 35, 52]], dtype=np.float32)
OBJ_IDS = [7, 8, 9]
SEED = 4
ORDER = [(pos, False) for pos in range(SEED, 8)] + [(pos, True) for pos in range(SEED - 1, -1, -1)]
"""The propagator's order on 8 frames: the seed, forward to the end, then backward from the seed to the start."""


@pytest.fixture(scope="module")
def clip8(tmp_path_factory: pytest.TempPathFactory) -> list[FrameRef]:
    return _write_clip(tmp_path_factory.mktemp("clip8"), 8)


@pytest.fixture(scope="module", params=["sam2", "sam3_tracker"])
def tracker(request: pytest.FixtureRequest) -> tuple[VideoTracker, ProcessorMixin]:
    return sam2_video.build_tiny() if request.param == "sam2" else sam3_video.build_tiny()


def _sessions(tracker: tuple, clip: list[FrameRef], boxes: np.ndarray = BOXES) -> tuple[VideoSession, VideoSession]:
    """Two identical whole-video sessions with the boxes on the seed frame: one to batch, one for the reference."""
    _, processor = tracker
    video = [load_frame(ref, 64)[0] for ref in clip]
    sessions = []
    for _ in range(2):
        session = processor.init_video_session(video=video, inference_device="cpu")
        processor.add_inputs_to_inference_session(
            session,
            frame_idx=SEED,
            obj_ids=OBJ_IDS[: len(boxes)],
            input_boxes=[boxes.tolist()],
            original_size=(HEIGHT, WIDTH),
        )
        sessions.append(session)
    return sessions[0], sessions[1]


def _record_per_object_steps(monkeypatch: pytest.MonkeyPatch, model: VideoTracker) -> list[tuple[VideoSession, int]]:
    """Wrap transformers' per-object step (what forward loops over): (session, frame index) of every call."""
    calls = []
    step = model._run_single_frame_inference

    def recording(**kwargs):
        calls.append((kwargs["inference_session"], kwargs["frame_idx"]))
        return step(**kwargs)

    monkeypatch.setattr(model, "_run_single_frame_inference", recording)
    return calls


def _steps_on(calls: list[tuple[VideoSession, int]], session: VideoSession) -> list[int]:
    return [frame for caller, frame in calls if caller is session]


def _assert_same_step(
    batched: ModelOutput, looped: ModelOutput, session: VideoSession, reference: VideoSession
) -> None:
    """Same outputs, and the same per-object entries stored for the frame (keys, shapes, dtypes, values)."""
    assert batched.object_ids == looped.object_ids and batched.frame_idx == looped.frame_idx
    assert batched.pred_masks.shape == looped.pred_masks.shape
    assert torch.equal(batched.pred_masks > 0, looped.pred_masks > 0)
    torch.testing.assert_close(batched.pred_masks, looped.pred_masks, **FLOAT32)
    torch.testing.assert_close(batched.object_score_logits, looped.object_score_logits, **FLOAT32)
    frame = looped.frame_idx
    for obj in range(reference.get_obj_num()):
        cond = frame in reference.output_dict_per_obj[obj]["cond_frame_outputs"]
        kind = "cond_frame_outputs" if cond else "non_cond_frame_outputs"
        stored, expected = (
            session.output_dict_per_obj[obj][kind][frame],
            reference.output_dict_per_obj[obj][kind][frame],
        )
        assert stored.keys() == expected.keys()
        for key, value in expected.items():
            tolerance = BFLOAT16 if value.dtype == torch.bfloat16 else FLOAT32
            torch.testing.assert_close(stored[key], value, **tolerance)  # also checks shape and dtype
    assert session.frames_tracked_per_obj == reference.frames_tracked_per_obj


def _assert_memory_stacks_objects(model: VideoTracker, session: VideoSession, frame: int, reverse: bool) -> None:
    """Index i of the batch's memory is exactly what transformers reads for object i, in the same order."""
    memory = video_batching._shared_memory(model, session, frame, reverse, torch.device("cpu"))
    assert memory is not None
    for obj in range(session.get_obj_num()):
        frames = model._gather_memory_frame_outputs(session, obj, frame, reverse)
        offsets, pointers, _ = model._get_object_pointers(session, obj, frame, session.num_frames, "cpu", reverse)
        assert [offset for offset, _ in memory.frames] == [offset for offset, _ in frames]
        for (_, stacked), (_, own) in zip(memory.frames, frames, strict=True):
            assert (stacked is None) == (own is None)
            for key in () if own is None else ("maskmem_features", "maskmem_pos_enc"):
                assert torch.equal(stacked[key][:, obj : obj + 1], own[key])
        assert memory.pointer_offsets == offsets
        for stacked, own in zip(memory.pointers, pointers, strict=True):
            assert torch.equal(stacked[obj : obj + 1], own)


def test_batched_tracking_equals_per_object_forward(tracker: tuple, clip8, monkeypatch) -> None:
    model, _ = tracker
    session, reference = _sessions(tracker, clip8)
    calls = _record_per_object_steps(monkeypatch, model)
    with torch.inference_mode():
        # Then the seed frame again, turning back, as transformers' propagate_in_video_iterator does: stored outputs.
        for pos, reverse in [*ORDER, (SEED, True)]:
            if pos != SEED:
                _assert_memory_stacks_objects(model, session, pos, reverse)
            _assert_same_step(
                track_frame(model, session, pos, reverse),
                model(inference_session=reference, frame_idx=pos, reverse=reverse),
                session,
                reference,
            )
    assert _steps_on(calls, session) == [SEED] * 3  # only the seed frame ran object by object
    assert _steps_on(calls, reference) == [pos for pos, _ in ORDER for _ in range(3)]


def test_one_object_and_prompted_frames_run_the_forward(tracker: tuple, clip8, monkeypatch) -> None:
    model, processor = tracker
    session, reference = _sessions(tracker, clip8, BOXES[:1])
    calls = _record_per_object_steps(monkeypatch, model)
    with torch.inference_mode():
        for pos, reverse in [*ORDER, (SEED, False)]:  # the seed frame again: its stored output is reused
            batched = track_frame(model, session, pos, reverse)
            looped = model(inference_session=reference, frame_idx=pos, reverse=reverse)
            # The forward on both: bit for bit the same.
            assert torch.equal(batched.pred_masks, looped.pred_masks)
            assert torch.equal(batched.object_score_logits, looped.object_score_logits)
    assert _steps_on(calls, session) == _steps_on(calls, reference) == [pos for pos, _ in ORDER]

    session, reference = _sessions(tracker, clip8)
    with torch.inference_mode():
        for pos, reverse in ORDER[:2]:
            _assert_same_step(
                track_frame(model, session, pos, reverse),
                model(inference_session=reference, frame_idx=pos, reverse=reverse),
                session,
                reference,
            )
        assert _steps_on(calls, session) == [SEED] * 3  # seed frame: the prompted path; next frame batched
        # A second seed for one object: its new prompt, then its own conditioning frames, need the forward.
        for ongoing in (session, reference):
            processor.add_inputs_to_inference_session(
                ongoing, frame_idx=6, obj_ids=[8], input_boxes=[[BOXES[2].tolist()]], original_size=(HEIGHT, WIDTH)
            )
        for pos, reverse in ORDER[2:4]:
            _assert_same_step(
                track_frame(model, session, pos, reverse),
                model(inference_session=reference, frame_idx=pos, reverse=reverse),
                session,
                reference,
            )
    assert _steps_on(calls, session) == [SEED] * 3 + [6] * 3 + [7] * 3


@pytest.mark.parametrize(
    ("dropped", "steps"),
    [(5, ORDER[:3]), (7, ORDER[:-1])],
    ids=["memory and pointer", "pointer only"],  # frame 0 reads frame 7's object pointer, not its memory
)
def test_objects_remembering_different_frames_run_the_forward(
    tracker: tuple, clip8, monkeypatch, dropped: int, steps: list[tuple[int, bool]]
) -> None:
    model, _ = tracker
    session, reference = _sessions(tracker, clip8)
    calls = _record_per_object_steps(monkeypatch, model)
    with torch.inference_mode():
        for pos, reverse in steps:
            track_frame(model, session, pos, reverse)
            model(inference_session=reference, frame_idx=pos, reverse=reverse)
        # Same conditioning frame, but one object no longer holds frame `dropped`: its memory is not the others'.
        for ongoing in (session, reference):
            del ongoing.output_dict_per_obj[1]["non_cond_frame_outputs"][dropped]
        last, reverse = ORDER[len(steps)]
        _assert_same_step(
            track_frame(model, session, last, reverse),
            model(inference_session=reference, frame_idx=last, reverse=reverse),
            session,
            reference,
        )
    assert _steps_on(calls, session) == [SEED] * 3 + [last] * 3


def _propagate(propagator: sam2_video.Sam2VideoPropagator, clip: list[FrameRef]) -> list:
    return list(propagator.propagate(clip, SEED, BOXES, OBJ_IDS, max_side=64))


def test_propagator_batches_tracked_frames(clip8, monkeypatch) -> None:
    """Through the propagator (streamed, pruned session): batching on by default, and the switch turns it off."""
    propagator = ModelRegistry("cpu").get(VIDEO_TINY)
    calls = _record_per_object_steps(monkeypatch, propagator.model)
    batched = _propagate(propagator, clip8)
    assert len(calls) == 3  # the seed frame's three objects; the seven tracked frames ran as batches
    propagator.batch_objects = False
    looped = _propagate(propagator, clip8)
    assert len(calls) == 3 + 3 * len(clip8)
    assert [index for index, _, _ in batched] == [pos for pos, _ in ORDER]
    for (i1, m1, s1), (i2, m2, s2) in zip(batched, looped, strict=True):
        assert i1 == i2 and np.array_equal(m1, m2)
        np.testing.assert_allclose(s1, s2, rtol=0, atol=FLOAT32["atol"])  # sigmoid: no steeper than the logits
