"""The official AVSBench metrics: PAPER.md §4 worked values, a loop reference, properties, semantic cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from evals.metrics import (
    BinaryMetricAccumulator,
    SemanticMetricAccumulator,
    fscore_binary,
    fscore_binary_per_frame,
    fscore_curves,
    fscore_thresholds,
    jaccard_per_frame,
    official_fscore,
    resize_nearest,
)

APPROX = 1e-6


def reference_fscore(logits: np.ndarray, gt: np.ndarray) -> float:
    """Loop transcription of the PAPER.md §4 F-score definition for one batch of frames (torch float32)."""
    scores = torch.sigmoid(torch.as_tensor(logits, dtype=torch.float32))
    th = torch.linspace(0, 1 - 1e-10, 255)
    g = torch.as_tensor(gt > 0, dtype=torch.float32)
    total, n = torch.zeros(255, dtype=torch.float64), 0
    for i in range(scores.shape[0]):
        if g[i].sum() == 0:
            continue
        f = torch.zeros(255, dtype=torch.float64)
        for j in range(255):
            pos = (scores[i] >= th[j]).double()
            tp = (pos * g[i]).sum()
            prec, rec = tp / (pos.sum() + 1e-20), tp / (g[i].sum() + 1e-20)
            f[j] = 1.3 * prec * rec / (0.3 * prec + rec)
        total += torch.nan_to_num(f, nan=0.0)
        n += 1
    return float((total / n).max()) if n else 0.0


def score_one(pred: np.ndarray, gt: np.ndarray) -> dict:
    acc = BinaryMetricAccumulator()
    acc.add(pred, gt)
    return acc.aggregate()


# ------------------------------------------------------------------------------------ PAPER.md §4 worked values
def test_worked_logits_one_vs_full_gt() -> None:
    agg = score_one(np.ones((5, 5, 5)), np.ones((5, 5, 5)))
    assert agg["miou"] == pytest.approx(1, abs=APPROX)
    assert agg["fscore"] == pytest.approx(1, abs=APPROX)


def test_worked_logits_zero_vs_empty_gt() -> None:
    agg = score_one(np.zeros((5, 5, 5)), np.zeros((5, 5, 5)))
    assert agg["miou"] == pytest.approx(1, abs=APPROX)
    assert agg["fscore"] == 0.0  # every frame is skipped, the video still counts
    assert agg["n_videos"] == 1


def test_worked_logits_zero_vs_full_gt() -> None:
    agg = score_one(np.zeros((5, 5, 5)), np.ones((5, 5, 5)))
    assert agg["miou"] == pytest.approx(0, abs=APPROX)
    assert agg["fscore"] == pytest.approx(1, abs=APPROX)  # threshold 0 marks everything positive
    assert agg["fscore_binary"] == 0.0  # the hard mask is empty


def test_worked_10x10_frame() -> None:
    gt = np.zeros((10, 10), dtype=bool)
    gt[:5] = True
    pred = np.zeros((10, 10), dtype=bool)
    pred[0:3] = True
    pred[5] = True
    assert jaccard_per_frame(pred, gt)[0] == pytest.approx(0.5, abs=APPROX)
    assert official_fscore(pred, gt) == pytest.approx(0.7091, abs=1e-4)
    assert official_fscore(pred, gt) == pytest.approx(0.585 / 0.825, abs=APPROX)
    f, nonempty = fscore_binary_per_frame(pred, gt)
    assert nonempty.all() and f[0] == pytest.approx(0.585 / 0.825, abs=APPROX)


@pytest.mark.parametrize("rows", [1, 3, 7])
def test_empty_prediction_floor(rows: int) -> None:
    gt = np.zeros((10, 10), dtype=bool)
    gt[:rows] = True
    rho = rows / 10
    assert official_fscore(np.zeros((10, 10), dtype=bool), gt) == pytest.approx(1.3 * rho / (0.3 * rho + 1))
    assert fscore_binary_per_frame(np.zeros((10, 10)), gt)[0][0] == 0.0


# ------------------------------------------------------------------------------------ fidelity details
def test_hard_mask_encodings_agree() -> None:
    rng = np.random.default_rng(0)
    gt = rng.random((3, 12, 12)) > 0.6
    hard = rng.random((3, 12, 12)) > 0.5
    for pred in (hard.astype(np.uint8), hard.astype(np.uint8) * 255, hard.astype(np.float32)):
        assert jaccard_per_frame(pred, gt) == pytest.approx(jaccard_per_frame(hard, gt))
        assert official_fscore(pred, gt) == pytest.approx(official_fscore(hard, gt))


def test_tiny_positive_logit_is_negative_as_in_float32_sigmoid() -> None:
    # sigmoid(1e-9) rounds to exactly 0.5 in float32, and the official test is sigmoid > 0.5.
    gt = np.ones((1, 2, 2))
    assert jaccard_per_frame(np.full((1, 2, 2), 1e-9), gt)[0] == pytest.approx(0, abs=APPROX)


def test_thresholds_match_torch() -> None:
    th = fscore_thresholds()
    assert th.shape == (255,) and th.dtype == np.float32
    assert th[0] == 0 and th[-1] == np.float32(1.0)


def test_vectorised_fscore_matches_loop_reference() -> None:
    rng = np.random.default_rng(1)
    gt = rng.random((4, 16, 16)) > 0.7
    gt[2] = False  # one empty frame: skipped
    logits = rng.normal(0, 3, (4, 16, 16)).astype(np.float32)
    logits[0, :2] = 40.0  # saturated sigmoid == 1.0 in float32: positive even at the last threshold
    assert official_fscore(logits, gt) == pytest.approx(reference_fscore(logits, gt), abs=1e-6)
    curves, nonempty = fscore_curves(logits, gt)
    assert curves.shape == (4, 255) and nonempty.tolist() == [True, True, False, True]


def test_empty_gt_jaccard_is_true_negative_fraction() -> None:
    pred = np.zeros((1, 4, 5), dtype=bool)
    pred[0, 0, :3] = True
    assert jaccard_per_frame(pred, np.zeros((1, 4, 5)))[0] == pytest.approx(17 / 20, abs=APPROX)


def test_prediction_resized_to_gt_with_nearest() -> None:
    small = np.zeros((1, 4, 4), dtype=bool)
    small[0, :2] = True
    gt = np.zeros((1, 8, 8), dtype=bool)
    gt[0, :4] = True
    assert jaccard_per_frame(small, gt)[0] == pytest.approx(1, abs=APPROX)
    rng = np.random.default_rng(2)
    img = rng.integers(0, 255, (13, 17), dtype=np.uint8)
    ours = resize_nearest(img[None], (31, 22))[0]
    pil = np.array(Image.fromarray(img).resize((22, 31), Image.Resampling.NEAREST))
    assert np.array_equal(ours, pil)


# ------------------------------------------------------------------------------------ accumulator properties
def random_videos(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(n):
        gt = rng.random((5, 10, 10)) > rng.uniform(0.3, 0.9)
        gt[rng.integers(0, 5)] = False
        videos.append((rng.normal(0, 2, (5, 10, 10)), gt))
    return videos


def test_perfect_prediction_scores_one() -> None:
    acc = BinaryMetricAccumulator()
    for _, gt in random_videos(4, 3):
        row = acc.add(gt, gt)
        assert row["fscore_binary"] == pytest.approx(1)
    agg = acc.aggregate()
    assert agg["miou"] == pytest.approx(1, abs=APPROX)
    assert agg["fscore"] == pytest.approx(1, abs=APPROX)
    assert agg["fscore_binary"] == pytest.approx(1)
    assert (agg["n_videos"], agg["n_frames"], agg["fscore_batch_size"]) == (4, 20, 1)


def test_permuting_videos_leaves_aggregate_unchanged() -> None:
    videos = random_videos(6, 4)
    first, second = BinaryMetricAccumulator(), BinaryMetricAccumulator()
    for pred, gt in videos:
        first.add(pred, gt)
    for i in (3, 0, 5, 1, 4, 2):
        second.add(*videos[i])
    a, b = first.aggregate(), second.aggregate()
    for key in ("miou", "fscore", "fscore_binary"):
        assert a[key] == pytest.approx(b[key], abs=1e-12)


def test_all_empty_video_counts_zero_in_both_fscores() -> None:
    acc = BinaryMetricAccumulator()
    row = acc.add(np.zeros((5, 6, 6), dtype=bool), np.zeros((5, 6, 6), dtype=bool))
    assert row["miou"] == pytest.approx(1, abs=APPROX)
    assert row["fscore"] == 0.0 and row["fscore_binary"] == 0.0 and row["n_nonempty"] == 0
    assert fscore_binary(np.zeros((2, 3, 3)), np.zeros((2, 3, 3))) == 0.0


def test_batch_size_pools_frames_of_consecutive_videos() -> None:
    full = np.ones((5, 6, 6), dtype=bool)
    empty = np.zeros((5, 6, 6), dtype=bool)
    batch1, batch2 = BinaryMetricAccumulator(1), BinaryMetricAccumulator(2)
    for acc in (batch1, batch2):
        acc.add(full, full)  # perfect video: F 1
        acc.add(empty, empty)  # all-empty GT: alone it scores 0 and counts; in a batch its frames are skipped
    assert batch1.aggregate()["fscore"] == pytest.approx(0.5, abs=APPROX)
    assert batch2.aggregate()["fscore"] == pytest.approx(1.0, abs=APPROX)
    assert batch2.aggregate()["fscore_batch_size"] == 2
    assert batch1.aggregate()["miou"] == pytest.approx(batch2.aggregate()["miou"])


def test_batch_max_of_mean_is_at_most_mean_of_max() -> None:
    videos = random_videos(4, 5)
    one, two = BinaryMetricAccumulator(1), BinaryMetricAccumulator(2)
    for pred, gt in videos:
        one.add(pred, gt)
        two.add(pred, gt)
    assert len(two.batch_fscores()) == 2
    assert two.aggregate()["fscore"] <= one.aggregate()["fscore"] + 1e-12


def test_frame_count_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="frames"):
        BinaryMetricAccumulator().add(np.zeros((4, 5, 5)), np.zeros((5, 5, 5)))
    with pytest.raises(ValueError, match="no videos"):
        BinaryMetricAccumulator().aggregate()


# ------------------------------------------------------------------------------------ semantic (AVSS)
SEM_GT = np.array([[[0, 1, 1], [0, 2, 2]], [[0, 0, 0], [0, 0, 0]]])
SEM_PRED = np.array([[[0, 1, 2], [0, 2, 2]], [[3, 0, 0], [0, 0, 0]]])


def f_beta(p: float, r: float) -> float:
    return 1.3 * p * r / (0.3 * p + r)


def test_semantic_hand_computed() -> None:
    acc = SemanticMetricAccumulator(num_classes=4, pad_to=None)
    acc.add(SEM_PRED, SEM_GT, name="v")
    agg = acc.aggregate()
    # class 0: frame 1 perfect; frame 2 P=5 G=6 I=5.  class 1: P=1 G=2 I=1.  class 2: P=3 G=2 I=2.
    # class 3: predicted once, never present: IoU 0, F 0 (0/0), counted once.
    iou = [(1 + 5 / 6) / 2, 0.5, 2 / 3, 0.0]
    fs = [(1 + f_beta(1, 5 / 6)) / 2, f_beta(1, 0.5), f_beta(2 / 3, 1), 0.0]
    assert agg["per_class_iou"] == pytest.approx(iou)
    assert agg["per_class_fscore"] == pytest.approx(fs)
    assert agg["miou"] == pytest.approx(np.mean(iou)) and agg["fscore"] == pytest.approx(np.mean(fs))
    assert agg["miou_unpadded"] == agg["miou"] and agg["n_padded_frames"] == 0


def test_semantic_padding_adds_background_frames() -> None:
    acc = SemanticMetricAccumulator(num_classes=4, pad_to=5)
    acc.add(SEM_PRED, SEM_GT)
    agg = acc.aggregate()
    assert agg["n_padded_frames"] == 3 and agg["pad_to"] == 5
    iou0, f0 = (1 + 5 / 6 + 3) / 5, (1 + f_beta(1, 5 / 6) + 3) / 5
    assert agg["per_class_iou"][0] == pytest.approx(iou0)
    assert agg["miou"] == pytest.approx((iou0 + 0.5 + 2 / 3) / 4)
    assert agg["fscore"] == pytest.approx((f0 + f_beta(1, 0.5) + f_beta(2 / 3, 1)) / 4)
    assert agg["miou_unpadded"] == pytest.approx(((1 + 5 / 6) / 2 + 0.5 + 2 / 3) / 4)
    assert agg["miou"] > agg["miou_unpadded"]


def test_semantic_perfect_scores_seen_classes_only() -> None:
    acc = SemanticMetricAccumulator(num_classes=4, pad_to=10)
    acc.add(SEM_GT, SEM_GT)
    agg = acc.aggregate()
    assert agg["per_class_iou"] == pytest.approx([1, 1, 1, 0])  # class 3 never predicted nor present: 0
    assert agg["miou"] == pytest.approx(0.75) and agg["fscore"] == pytest.approx(0.75)


def test_semantic_rejects_out_of_range_classes() -> None:
    with pytest.raises(ValueError, match="class indices"):
        SemanticMetricAccumulator(num_classes=3).add(SEM_PRED, SEM_GT)
