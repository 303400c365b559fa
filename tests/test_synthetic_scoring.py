"""Synthetic datasets scored end to end: GT as predictions, all-empty predictions, missing predictions."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evals.datasets import EvalClip, load_clips
from evals.datasets.masks import load_binary_mask, load_semantic_labels, write_binary_mask, write_index_mask
from evals.scoring import load_ground_truth, prediction_paths, score_folder, score_predictions
from evals.synthetic import main as synthetic_main
from evals.synthetic import write_synthetic
from tools.errors import InputError

APPROX = 1e-6


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("avsbench")
    for subset in ("s4", "ms3", "avss"):
        write_synthetic(root, subset, n=6, seed=0)
    return root


def copy_gt_as_predictions(clips: list[EvalClip], pred_dir: Path) -> None:
    for clip in clips:
        for gt, pred in zip(clip.gt_mask_paths, prediction_paths(clip, pred_dir), strict=True):
            if gt is not None:
                pred.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(gt, pred)


def f_floor(rho: float) -> float:
    return 1.3 * rho / (0.3 * rho + 1)


# ------------------------------------------------------------------------------------ the written files
def test_synthetic_files_follow_the_official_formats(data_root: Path) -> None:
    clip = load_clips(data_root, "s4")[0]
    frame = Image.open(clip.frame_paths[0])
    assert (frame.format, frame.mode, frame.size) == ("PNG", "RGB", (224, 224))
    mask = Image.open(clip.gt_mask_paths[0])
    assert mask.mode == "L" and set(np.unique(np.array(mask))) <= {0, 255}
    with wave.open(str(clip.audio_path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (1, 16000, 2, 80000)
    v2 = next(c for c in load_clips(data_root, "avss") if c.label == "v2")
    assert Image.open(v2.frame_paths[0]).format == "JPEG"
    assert Image.open(v2.gt_mask_paths[0]).mode == "P"
    semantic = v2.gt_mask_paths[0].parent.parent / "labels_semantic" / "0.png"
    assert np.array_equal(np.array(Image.open(semantic)), load_semantic_labels(v2.gt_mask_paths[0]))


def test_cli_writes_and_reruns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert synthetic_main(["--out", str(tmp_path), "--subset", "ms3", "--n", "2", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip().endswith("Multi-sources")
    assert len(load_clips(tmp_path, "ms3", split=None)) == 2
    assert synthetic_main(["--out", str(tmp_path), "--subset", "ms3", "--n", "0"]) == 2
    (tmp_path / "file").write_text("not a folder")
    for out in (tmp_path / "file", tmp_path / "file" / "data"):
        assert synthetic_main(["--out", str(out), "--subset", "s4", "--n", "1"]) == 2
    assert capsys.readouterr().err.count(f"{tmp_path / 'file'} is a file") == 2


# ------------------------------------------------------------------------------------ GT as prediction
@pytest.mark.parametrize("subset", ["s4", "ms3", "v3"])
def test_binary_gt_as_prediction_scores_one(data_root: Path, tmp_path: Path, subset: str) -> None:
    clips = load_clips(data_root, subset, split="test")
    copy_gt_as_predictions(clips, tmp_path)
    report = score_predictions(clips, tmp_path)
    agg = report.aggregate
    assert agg["subset"] == subset and agg["n_videos"] == len(clips) == len(report.rows)
    assert agg["miou"] == pytest.approx(1, abs=APPROX)
    assert agg["fscore"] == pytest.approx(1, abs=APPROX)
    assert agg["fscore_binary"] == pytest.approx(1, abs=APPROX)
    assert agg["fscore_batch_size"] == 1


def test_s4_train_scores_first_frame_only(data_root: Path, tmp_path: Path) -> None:
    clips = load_clips(data_root, "s4", split="train")
    copy_gt_as_predictions(clips, tmp_path)
    report = score_predictions(clips, tmp_path)
    assert report.aggregate["n_frames"] == len(clips) and report.aggregate["miou"] == pytest.approx(1, abs=APPROX)


def test_avss_gt_as_prediction(data_root: Path, tmp_path: Path) -> None:
    clips = load_clips(data_root, "avss", split="test")
    copy_gt_as_predictions(clips, tmp_path)
    report = score_folder(data_root, "avss", tmp_path)
    agg = report.aggregate
    seen = sorted({c for row in report.rows for c in row["classes"]})
    # Perfect on every class that occurs; classes that never occur score 0 yet count in the mean over 71.
    assert [agg["per_class_iou"][c] for c in seen] == pytest.approx([1.0] * len(seen))
    assert agg["miou"] == pytest.approx(len(seen) / 71) and agg["fscore"] == pytest.approx(len(seen) / 71)
    assert agg["miou_unpadded"] == pytest.approx(agg["miou"])
    assert agg["n_padded_frames"] == 10  # v1s and v1m test videos, 5 frames each, padded to 10
    assert all(row["miou"] == pytest.approx(1) for row in report.rows)


# ------------------------------------------------------------------------------------ all-empty predictions
def write_empty_predictions(clips: list[EvalClip], pred_dir: Path) -> None:
    for clip in clips:
        for gt, pred in zip(clip.gt_mask_paths, prediction_paths(clip, pred_dir), strict=True):
            if gt is not None:
                shape = load_binary_mask(gt).shape
                if clip.is_semantic:
                    write_index_mask(pred, np.zeros(shape, dtype=np.uint8))
                else:
                    write_binary_mask(pred, np.zeros(shape, dtype=bool))


@pytest.mark.parametrize("subset", ["s4", "ms3"])
def test_binary_empty_predictions_hand_computed(data_root: Path, tmp_path: Path, subset: str) -> None:
    clips = load_clips(data_root, subset, split="test")
    write_empty_predictions(clips, tmp_path)
    agg = score_predictions(clips, tmp_path).aggregate
    ious, fs = [], []
    for clip in clips:
        rhos = [m.mean() for m in load_ground_truth(clip)]
        # Empty prediction: IoU 0 on object frames, 1 on empty ones; F = mean floor over the object frames.
        ious.append(np.mean([0.0 if rho > 0 else 1.0 for rho in rhos]))
        fs.append(np.mean([f_floor(rho) for rho in rhos if rho > 0]))
    if subset == "ms3":
        assert min(ious) < max(ious)  # the odd test video has a silent last frame
    assert agg["miou"] == pytest.approx(np.mean(ious), abs=APPROX)
    assert agg["fscore"] == pytest.approx(np.mean(fs), abs=1e-6)
    assert agg["fscore_binary"] == 0.0


def test_avss_empty_predictions_hand_computed(data_root: Path, tmp_path: Path) -> None:
    clips = load_clips(data_root, "avss", split="test")
    write_empty_predictions(clips, tmp_path)
    agg = score_predictions(clips, tmp_path, pad_to=10).aggregate
    iou, f, count = np.zeros(71), np.zeros(71), np.zeros(71)
    n_pad = 0
    for clip in clips:
        frames = load_ground_truth(clip)
        n_pad += 10 - len(frames)
        for gt in frames:
            bg = (gt == 0).mean()  # prediction all background: P_0 = everything, I_0 = U_0 = ... as below
            iou[0] += bg
            f[0] += 1.3 * bg / (0.3 * bg + 1)
            count[0] += 1
            for c in np.unique(gt[gt > 0]):
                count[c] += 1  # present, never predicted: IoU 0, F 0
    unpadded = np.where(count > 0, iou / np.maximum(count, 1), 0).mean()
    iou[0] += n_pad
    f[0] += n_pad
    count[0] += n_pad
    assert agg["miou"] == pytest.approx(np.where(count > 0, iou / np.maximum(count, 1), 0).mean())
    assert agg["fscore"] == pytest.approx(np.where(count > 0, f / np.maximum(count, 1), 0).mean())
    assert agg["miou_unpadded"] == pytest.approx(unpadded)


# ------------------------------------------------------------------------------------ bad prediction folders
def test_missing_prediction_names_path_and_count(data_root: Path, tmp_path: Path) -> None:
    clips = load_clips(data_root, "s4", split="test")
    copy_gt_as_predictions(clips, tmp_path)
    victim = prediction_paths(clips[1], tmp_path)[3]
    victim.unlink()
    with pytest.raises(InputError, match=rf"missing prediction file: {victim} \(1 prediction files missing"):
        score_predictions(clips, tmp_path)
    with pytest.raises(InputError, match="prediction folder not found"):
        score_predictions(clips, tmp_path / "nowhere")


def test_unknown_colour_in_semantic_prediction(data_root: Path, tmp_path: Path) -> None:
    clips = load_clips(data_root, "avss", split="test", limit=1)
    copy_gt_as_predictions(clips, tmp_path)
    bad = prediction_paths(clips[0], tmp_path)[0]
    Image.fromarray(np.full((224, 224, 3), 7, dtype=np.uint8)).save(bad)
    with pytest.raises(InputError, match=rf"{bad.name}.*no VOC class colour"):
        score_predictions(clips, tmp_path)


def test_resized_predictions_are_scored_at_gt_size(data_root: Path, tmp_path: Path) -> None:
    clips = load_clips(data_root, "ms3", split="test", limit=1)
    for gt, pred in zip(clips[0].gt_mask_paths, prediction_paths(clips[0], tmp_path), strict=True):
        assert gt is not None
        pred.parent.mkdir(parents=True, exist_ok=True)
        Image.open(gt).resize((448, 448), Image.Resampling.NEAREST).save(pred)
    agg = score_predictions(clips, tmp_path).aggregate
    assert agg["miou"] == pytest.approx(1, abs=APPROX)
