"""Data model validation, COCO RLE and PNG round trips, atomic writes, and the trace file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from tools.datamodel import Detections, FrameMasks, ObjectMask
from tools.outputs import mask_file_name, write_masks_folder
from tools.propagation import mask_box
from tools.rle import decode_rle, encode_rle, rle_area, rle_box, rle_union_area
from tools.runfiles import atomic_path, read_mask_png, staged_dir, write_json_atomic, write_mask_png
from tools.tracing import TraceWriter, read_trace


def _random_mask(seed: int, shape: tuple[int, int]) -> np.ndarray:
    return np.random.default_rng(seed).random(shape) > 0.6


def test_detections_validate_lengths_and_boxes() -> None:
    with pytest.raises(ValueError, match="disagree in length"):
        Detections(0, np.zeros((2, 4)), np.zeros(1), ("a", "b"))
    with pytest.raises(ValueError, match="xyxy"):
        Detections(0, np.array([[10, 10, 5, 20]]), np.array([0.5]), ("a",))
    with pytest.raises(ValueError, match="finite"):
        Detections(0, np.array([[0, 0, np.nan, 1]]), np.array([0.5]), ("a",))
    dets = Detections(3, np.array([[0, 0, 4, 4], [1, 1, 2, 2]]), np.array([0.9, 0.3]), ["dog", "man"])
    assert dets.boxes.dtype == np.float32 and len(dets) == 2
    kept = dets.filter(dets.scores > 0.5)
    assert kept.phrases == ("dog",) and kept.frame_index == 3
    assert Detections.from_dict(json.loads(json.dumps(dets.to_dict()))).phrases == dets.phrases
    assert len(Detections.empty(1)) == 0


def test_rle_round_trip_matches_pycocotools_area() -> None:
    for seed, shape in enumerate([(1, 1), (7, 5), (48, 64), (241, 319)]):
        mask = _random_mask(seed, shape)
        rle = encode_rle(mask)
        assert isinstance(rle["counts"], str) and rle["size"] == list(shape)
        np.testing.assert_array_equal(decode_rle(json.loads(json.dumps(rle))), mask)
        assert coco_mask.area({"size": rle["size"], "counts": rle["counts"].encode()}) == mask.sum()
    with pytest.raises(ValueError):
        encode_rle(np.zeros((2, 2, 2), bool))


def test_frame_masks_union_and_dict_round_trip() -> None:
    a, b = _random_mask(1, (30, 40)), _random_mask(2, (30, 40))
    frame = FrameMasks(
        2, 30, 40, (ObjectMask(a, "dog", (0, 0, 5, 5), 0.7, 0.9), ObjectMask(b, "man", (1, 1, 6, 6), 0.4, 0.8))
    )
    np.testing.assert_array_equal(frame.union(), a | b)
    back = FrameMasks.from_dict(json.loads(json.dumps(frame.to_dict())))
    np.testing.assert_array_equal(back.union(), a | b)
    assert [o.phrase for o in back.objects] == ["dog", "man"] and back.objects[0].area == a.sum()
    with pytest.raises(ValueError, match="does not match frame size"):
        FrameMasks(0, 10, 10, (ObjectMask(a, "dog", (0, 0, 1, 1), 0.5, 0.5),))
    assert not FrameMasks(0, 4, 5).union().any()


def _blob_mask(shape: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize("seed", range(4))
def test_rle_areas_unions_and_boxes_match_the_pixels(seed: int) -> None:
    shape = (37, 53)
    masks = [_random_mask(seed * 3 + k, shape) & _blob_mask(shape, (k * 5, 2, 30 + k * 7, 20 + k)) for k in range(3)]
    masks.append(np.zeros(shape, bool))
    rles = [encode_rle(m) for m in masks]
    assert [rle_area(r) for r in rles] == [int(m.sum()) for m in masks]
    assert rle_union_area(rles) == int(np.logical_or.reduce(masks).sum()) and rle_union_area([]) == 0
    assert [rle_box(r) for r in rles] == [mask_box(m) for m in masks]  # the empty mask's box is (0, 0, 0, 0)


def test_an_rle_held_object_counts_areas_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    shape = (30, 40)
    dog, dog2, man = (_blob_mask(shape, b) for b in [(0, 0, 10, 10), (5, 5, 20, 12), (30, 20, 40, 30)])
    arrays = FrameMasks(
        0,
        *shape,
        (
            ObjectMask(dog, "dog", (0, 0, 10, 10), 0.9, 0.9),
            ObjectMask(dog2, "dog", (5, 5, 20, 12), 0.8, 0.9),
            ObjectMask(man, "man", (30, 20, 40, 30), 0.7, 0.9, object_id=4),
        ),
    )
    data = json.loads(json.dumps(arrays.to_dict()))
    assert data["union_area"] == int((dog | dog2 | man).sum()) and data["objects"][2]["object_id"] == 4

    def no_decoding(rle: dict) -> np.ndarray:
        raise AssertionError("decoded")

    monkeypatch.setattr("tools.datamodel.decode_rle", no_decoding)
    for frame in (FrameMasks.from_dict(data), FrameMasks.from_dict(_without_areas(data))):
        assert frame.union_area == int((dog | dog2 | man).sum())
        assert frame.phrase_areas == {"dog": int((dog | dog2).sum()), "man": int(man.sum())}
        assert [o.area for o in frame.objects] == [int(m.sum()) for m in (dog, dog2, man)]
        assert all(o.holds_rle and o.shape == shape for o in frame.objects)
        assert frame.to_dict()["objects"][0]["rle"] == data["objects"][0]["rle"]  # handed on, not re-encoded
    monkeypatch.undo()
    back = FrameMasks.from_dict(data)
    np.testing.assert_array_equal(back.union(), dog | dog2 | man)  # pixels decode when read
    np.testing.assert_array_equal(back.objects[2].mask, man)
    renamed = back.objects[2].with_object_id(7)
    assert renamed.object_id == 7 and back.objects[2].object_id == 4 and renamed.mask is back.objects[2].mask
    with pytest.raises(AttributeError, match="read-only"):
        back.objects[0].phrase = "cat"  # type: ignore[misc]
    with pytest.raises(ValueError, match="does not match frame size"):
        FrameMasks(0, 10, 10, (ObjectMask.from_rle(encode_rle(dog), "dog", (0, 0, 1, 1), 0.5, 0.5),))


def _without_areas(data: dict) -> dict:
    """The dict with no recorded areas: they are then counted from the RLE."""
    objects = [{k: v for k, v in o.items() if k != "area"} for o in data["objects"]]
    return {**{k: v for k, v in data.items() if k != "union_area"}, "objects": objects}


def test_mask_png_follows_avsbench_convention(tmp_path: Path) -> None:
    mask = _random_mask(3, (23, 37))
    write_mask_png(tmp_path / "m.png", mask)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "L" and image.size == (37, 23)
        assert set(np.unique(np.array(image))) <= {0, 255}
    np.testing.assert_array_equal(read_mask_png(tmp_path / "m.png"), mask)
    # Ground truth comes in P and 1 modes too.
    Image.fromarray(mask).convert("1").save(tmp_path / "one.png")
    np.testing.assert_array_equal(read_mask_png(tmp_path / "one.png"), mask)


def test_masks_folder_names_frames_from_one(tmp_path: Path) -> None:
    masks = [FrameMasks(k, 8, 8) for k in range(3)]
    files = write_masks_folder(tmp_path / "masks", "clip", masks)
    assert (
        [Path(f).name for f in files]
        == ["clip_1.png", "clip_2.png", "clip_3.png"]
        == [mask_file_name("clip", k) for k in range(3)]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


def test_atomic_writes_leave_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), staged_dir(tmp_path / "masks") as staging:
        (staging / "a.png").write_bytes(b"x")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1} and list(tmp_path.iterdir()) == [target]


def test_trace_records_spans_and_errors(tmp_path: Path) -> None:
    tracer = TraceWriter(tmp_path / "trace.jsonl")
    tracer.emit("run_start", "pipeline", source={"path": Path("/x.mp4")})
    with tracer.span("node", "load") as fields:
        fields["n_frames"] = np.int64(5)
    with pytest.raises(ValueError), tracer.span("node", "ground"):
        raise ValueError("bad box\nsecond line")
    records = read_trace(tmp_path / "trace.jsonl")
    assert [r["kind"] for r in records] == ["run_start", "node", "node"]
    assert all({"ts", "kind", "name", "ms"} <= set(r) for r in records)
    assert records[0]["source"] == {"path": "/x.mp4"}
    assert records[1]["n_frames"] == 5 and records[1]["ms"] >= 0
    assert records[2]["error"] == "ValueError: bad box"
    assert records == tracer.records
