"""AVSBench loaders on synthetic datasets in the official layouts; palette and mask reading; bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evals.datasets import load_avss, load_clips, load_ms3, load_s4, load_v3, read_avss_classes
from evals.datasets.categories import S4_CATEGORIES, S4_CATEGORY_NOUN, S4_CATEGORY_TO_AVSS, split_a_obj
from evals.datasets.masks import load_binary_mask, load_index_mask, load_semantic_labels, write_index_mask
from evals.datasets.palette import decode_voc_rgb, voc_palette
from evals.synthetic import write_synthetic
from tools.errors import InputError


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("avsbench")
    for subset in ("s4", "ms3", "avss"):
        write_synthetic(root, subset, n=6, seed=0)
    return root


# ------------------------------------------------------------------------------------ S4
def test_s4_test_split(data_root: Path) -> None:
    clips = load_s4(data_root)
    assert [c.split for c in clips] == ["test", "test"]
    clip = clips[0]
    assert clip.subset == "s4" and clip.frame_count == 5 and clip.annotated_frames == (0, 1, 2, 3, 4)
    assert clip.frame_paths[2].name == f"{clip.name}_3.png"
    assert (
        clip.frame_paths[2].parent
        == data_root / "Single-source/s4_data/visual_frames/test" / str(clip.category) / clip.name
    )
    assert clip.audio_path == data_root / f"Single-source/s4_data/audio_wav/test/{clip.category}/{clip.name}.wav"
    assert clip.class_names == (S4_CATEGORY_NOUN[str(clip.category)],)
    assert clip.raw_classes == (clip.category,)


def test_s4_train_has_one_mask(data_root: Path) -> None:
    clips = load_s4(data_root / "Single-source", split="train")
    assert len(clips) == 2
    for clip in clips:
        assert clip.gt_mask_paths[0] is not None and clip.gt_mask_paths[1:] == (None,) * 4
        assert clip.annotated_frames == (0,)


def test_s4_split_none_and_limit(data_root: Path) -> None:
    assert len(load_clips(data_root, "s4", split=None)) == 6
    assert len(load_clips(data_root, "s4", split=None, limit=4)) == 4


def test_s4_category_tables_cover_all_23() -> None:
    assert len(S4_CATEGORIES) == 23 and set(S4_CATEGORY_TO_AVSS) == set(S4_CATEGORIES)
    assert S4_CATEGORY_NOUN["lawn_mowing"] == "lawn mower" and S4_CATEGORY_NOUN["race_car"] == "car"


# ------------------------------------------------------------------------------------ MS3
def test_ms3_layout(data_root: Path) -> None:
    clips = load_ms3(data_root, split="train")
    clip = clips[0]
    assert clip.frame_paths[0] == data_root / f"Multi-sources/ms3_data/visual_frames/{clip.name}/{clip.name}.mp4_1.png"
    assert all(p is not None for p in clip.gt_mask_paths)  # all 5 masks in every split
    assert clip.gt_mask_paths[4] == data_root / f"Multi-sources/ms3_data/gt_masks/train/{clip.name}/{clip.name}_5.png"
    assert clip.class_names == ()  # the synthetic AVSS tree has no v1m row of this name


def test_ms3_class_names_from_avss_metadata(data_root: Path, tmp_path: Path) -> None:
    name = load_ms3(data_root)[0].name
    meta = tmp_path / "metadata.csv"
    meta.write_text(f"vid,uid,s_min,s_sec,a_obj,split,label\n{name},{name},0,0,guitar_emergency-car,test,v1m\n")
    clip = load_ms3(data_root, avss_root=tmp_path)[0]
    assert clip.raw_classes == ("guitar", "emergency-car")
    assert clip.class_names == ("guitar", "emergency car")
    with pytest.raises(InputError, match="no AVSS metadata"):
        load_ms3(data_root, avss_root=tmp_path / "nowhere")


# ------------------------------------------------------------------------------------ AVSS and V3
def test_avss_layout(data_root: Path) -> None:
    clips = {c.label: c for c in load_avss(data_root)}
    assert set(clips) == {"v1s", "v1m", "v2"}
    assert clips["v2"].frame_count == 10 and clips["v1m"].frame_count == 5
    v2 = clips["v2"]
    assert v2.frame_paths[9] == data_root / f"AVSBench_semantic/v2/{v2.name}/frames/9.jpg"
    assert v2.gt_mask_paths[0] == data_root / f"AVSBench_semantic/v2/{v2.name}/labels_rgb/0.png"
    assert v2.is_semantic and len(v2.class_names) == 2
    train_v1s = load_avss(data_root, split="train", labels=("v1s",))
    assert [c.annotated_frames for c in train_v1s] == [(0,)]


def test_avss_classes_and_v3(data_root: Path) -> None:
    classes = read_avss_classes(data_root)
    assert len(classes) == 71 and classes[0] == "background"
    v3 = load_v3(data_root)
    assert {c.label for c in v3} == {"v1m", "v2"} and all(c.split == "unseen" for c in v3)
    assert not v3[0].is_semantic
    assert len(load_clips(data_root, "v3", split="test")) == len(v3)


def test_a_obj_tokens() -> None:
    assert split_a_obj("girl_guitar") == ("girl", "guitar")
    assert split_a_obj("h orse") == ("horse",)


# ------------------------------------------------------------------------------------ errors
def test_missing_frame_names_path_and_count(data_root: Path, tmp_path: Path) -> None:
    root = write_synthetic(tmp_path, "s4", n=3, seed=1)
    clip = load_s4(root)[0]
    clip.frame_paths[1].unlink()
    clip.audio_path.unlink()
    with pytest.raises(InputError, match=r"missing dataset file: .*_2\.png \(2 listed files missing"):
        load_s4(root)
    assert len(load_s4(root, check_files=False)) == 1


def test_malformed_csv_is_an_input_error(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path, "ms3", n=3)
    csv_path = root / "ms3_meta_data.csv"
    csv_path.write_text(csv_path.read_text() + "extra,test,oops\n")
    with pytest.raises(InputError, match=r"ms3_meta_data\.csv: line 5 has 3 fields"):
        load_ms3(root)
    csv_path.write_text("video_id,part\nabc,test\n")
    with pytest.raises(InputError, match=r"ms3_meta_data\.csv: no column 'split'"):
        load_ms3(root)


def test_unknown_split_root_and_subset(data_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no rows with split 'tset'"):
        load_s4(data_root, split="tset")
    with pytest.raises(InputError, match="no S4 metadata"):
        load_s4(tmp_path)
    with pytest.raises(InputError, match="unknown subset"):
        load_clips(data_root, "s5")
    with pytest.raises(InputError, match="limit"):
        load_s4(data_root, limit=0)


def test_bad_label2idx(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path, "avss", n=3)
    (root / "label2idx.json").write_text("{not json")
    with pytest.raises(InputError, match=r"label2idx\.json"):
        read_avss_classes(root)


# ------------------------------------------------------------------------------------ palette and mask files
def test_voc_palette_and_decoding() -> None:
    pal = voc_palette(71)
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert len({tuple(c) for c in pal}) == 71
    rgb = pal[np.array([[0, 5, 70], [12, 0, 1]])]
    rgb[1, 1] = (1, 2, 3)  # no class colour: background, counted
    classes, unknown = decode_voc_rgb(rgb)
    assert classes.tolist() == [[0, 5, 70], [12, 0, 1]] and unknown == 1


def test_mask_modes(tmp_path: Path) -> None:
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:3, 2:7] = True
    for mode in ("L", "1", "P", "RGB"):
        img = Image.fromarray((mask * 255).astype(np.uint8)).convert(mode)
        img.save(tmp_path / f"{mode}.png")
        assert np.array_equal(load_binary_mask(tmp_path / f"{mode}.png"), mask), mode
    classes = np.array([[0, 3, 3], [70, 0, 1]])
    write_index_mask(tmp_path / "idx.png", classes)
    assert np.array_equal(load_semantic_labels(tmp_path / "idx.png"), classes)
    assert np.array_equal(load_index_mask(tmp_path / "idx.png"), classes)
    Image.open(tmp_path / "idx.png").convert("RGB").save(tmp_path / "rgb.png")
    assert np.array_equal(load_semantic_labels(tmp_path / "rgb.png"), classes)
    assert np.array_equal(load_index_mask(tmp_path / "rgb.png"), classes)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"junk\.png"):
        load_binary_mask(tmp_path / "junk.png")


def test_synthetic_is_rerunnable_and_label2idx_has_71_keys(tmp_path: Path) -> None:
    first = write_synthetic(tmp_path, "avss", n=4, seed=2)
    before = (first / "metadata.csv").read_text()
    assert write_synthetic(tmp_path, "avss", n=4, seed=2) == first
    assert (first / "metadata.csv").read_text() == before
    assert len(json.loads((first / "label2idx.json").read_text())) == 71
    assert not list(first.glob(".*.tmp"))
