"""The official AVSBench metrics (PAPER.md §4), numpy with torch only where float32 rounding must match.

Binary (S4, MS3, V3). Inputs are per-video arrays of shape (T, H, W) (a single (H, W) frame is read as T = 1):
predictions are LOGITS, as the official code takes them; a hard mask passes as logits too: bool/0-1 arrays are
read as logits 0/1, so sigmoid gives 0.5 (negative, since the test is sigmoid > 0.5) and 0.731 (positive); a 0/255
mask works the same way. Ground truth is any array whose non-zero pixels are the object.

- Jaccard ("mIoU", M_J), per frame: |P and G| / (|P or G| + 1e-7) with P = sigmoid(logits) > 0.5; when G is empty,
  TN / (H*W + 1e-7), the fraction of pixels correctly left empty. The 1e-7 is the official eps. Mean over the
  frames of a video, then over videos.
- F-score (M_F), beta^2 = 0.3: S = sigmoid(logits) (float32); 255 thresholds t = linspace(0, 1 - 1e-10, 255)
  (float32, as torch builds them); positive when S >= t. Each frame with NON-EMPTY G gives a curve
  F(t) = 1.3 P R / (0.3 P + R), P = TP / (|pos| + 1e-20), R = TP / (|G| + 1e-20), NaN -> 0. A batch scores the max
  over t of the mean curve over all its non-empty frames; a batch without one scores 0 and still counts. The
  aggregate is the mean over batches. A batch is `fscore_batch_size` consecutive videos (default 1 = the official
  test loader's one video per batch). Because threshold 0 marks every pixel positive, an empty prediction still
  scores 1.3 rho / (0.3 rho + 1) (rho = GT area fraction): official behaviour, kept.
- fscore_binary: the plain F (beta^2 = 0.3) of the hard mask P = sigmoid > 0.5, with the same eps and NaN rule,
  per non-empty-GT frame, averaged over those frames of the video, then over videos. A video whose frames are all
  empty scores 0 and still counts, the same rule as the official F (so the two stay comparable).

Semantic (AVSS): predictions and GT are (T, H, W) class indices in 0..num_classes-1 (71, 0 = background). For
each frame and class c: I_c, P_c (predicted pixels), G_c (GT pixels), U_c = P_c + G_c - I_c;
IoU_c = I_c / (U_c + 2.22e-16), F_c = 1.3 p r / (0.3 p + r) with p = I_c / P_c, r = I_c / G_c, NaN -> 0. Each is
summed over the frames where U_c > 0 (class predicted or present) and divided by that frame count (0 if never); the
score is the mean over ALL classes. Official testing pads v1 videos (5 frames) to 10 with frames that are background
in both prediction and GT: that adds IoU 1 and F 1 to the background class for each padded frame. The semantic
accumulator reports both: `miou`/`fscore` padded to `pad_to` (official, default 10) and `*_unpadded`.

Predictions whose size differs from the GT's are resized to the GT size with nearest neighbour (PIL's convention:
source index floor((i + 0.5) * in / out)).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import torch

BETA2 = 0.3
N_THRESHOLDS = 255
IOU_EPS = 1e-7  # official mask_iou eps
PR_EPS = 1e-20  # official _eval_pr eps
SEMANTIC_IOU_EPS = 2.220446049250313e-16  # official _batch_miou_fscore eps


# ----------------------------------------------------------------------------------------------- array plumbing
def _frames(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    """(H, W) or (T, H, W) -> (T, H, W) numpy array."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{what}: expected (H, W) or (T, H, W), got shape {arr.shape}")
    return arr


def resize_nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, h, w) -> (T, H, W) nearest-neighbour resize (PIL NEAREST convention); any dtype, no copy if same size."""
    _, h, w = x.shape
    big_h, big_w = size
    if (h, w) == (big_h, big_w):
        return x
    rows = np.minimum(((np.arange(big_h) + 0.5) * h / big_h).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(big_w) + 0.5) * w / big_w).astype(np.int64), w - 1)
    return x[:, rows[:, None], cols[None, :]]


def _pair(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Validated (T, H, W) pred resized to the GT size, and the GT."""
    p, g = _frames(pred, "prediction"), _frames(gt, "ground truth")
    if p.shape[0] != g.shape[0]:
        raise ValueError(f"prediction has {p.shape[0]} frames, ground truth {g.shape[0]}")
    return resize_nearest(p, g.shape[1:]), g


def sigmoid_scores(logits: np.ndarray) -> np.ndarray:
    """(T, H, W) logits (bool read as 0/1) -> float32 sigmoid, computed by torch as the official code does."""
    x = np.ascontiguousarray(logits, dtype=np.float32)
    return torch.sigmoid(torch.from_numpy(x)).numpy()


@cache
def fscore_thresholds() -> np.ndarray:
    """(255,) float32 thresholds, exactly torch.linspace(0, 1 - 1e-10, 255) (the last one rounds to 1.0)."""
    th = torch.linspace(0, 1 - 1e-10, N_THRESHOLDS).numpy()
    th.flags.writeable = False
    return th


def _f_beta(tp: np.ndarray, n_pos: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """Official F (beta^2 0.3) from counts, with the 1e-20 eps and NaN -> 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = tp / (n_pos + PR_EPS)
        rec = tp / (n_gt + PR_EPS)
        f = (1 + BETA2) * prec * rec / (BETA2 * prec + rec)
    return np.nan_to_num(f, nan=0.0)


# ----------------------------------------------------------------------------------------------- binary, per frame
def jaccard_per_frame(pred_logits: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> np.ndarray:
    """(T,) float64 official Jaccard of each frame (empty-GT frames score TN / (H*W)). Shapes (T, H, W) or (H, W)."""
    p, g = _pair(pred_logits, gt)
    pos = sigmoid_scores(p) > 0.5
    obj = g > 0
    n_px = obj.shape[1] * obj.shape[2]
    inter = (pos & obj).sum(axis=(1, 2)).astype(np.float64)
    union = (pos | obj).sum(axis=(1, 2)).astype(np.float64)
    empty = ~obj.any(axis=(1, 2))
    true_neg = (~pos & ~obj).sum(axis=(1, 2)).astype(np.float64)
    inter = np.where(empty, true_neg, inter)
    union = np.where(empty, float(n_px), union)
    return inter / (union + IOU_EPS)


def fscore_curves(
    pred_logits: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame official F curves: ((T, 255) float64 F at each threshold, (T,) bool GT non-empty).

    Curves of empty-GT frames are returned as zeros; callers must use only the frames flagged non-empty.
    Vectorised: each pixel's count of thresholds <= S (searchsorted) is histogrammed per frame, and a suffix sum
    gives |pos| and TP at every threshold at once.
    """
    p, g = _pair(pred_logits, gt)
    t = p.shape[0]
    scores = sigmoid_scores(p).reshape(t, -1)
    obj = (g > 0).reshape(t, -1)
    th = fscore_thresholds()
    # k = number of thresholds <= S; the pixel is positive at threshold j exactly when j < k.
    k = np.searchsorted(th, scores, side="right") + (N_THRESHOLDS + 1) * np.arange(t)[:, None]
    hist_all = np.bincount(k.ravel(), minlength=t * (N_THRESHOLDS + 1)).reshape(t, -1)
    hist_obj = np.bincount(k[obj], minlength=t * (N_THRESHOLDS + 1)).reshape(t, -1)
    # suffix[:, j] = pixels with k >= j; positives at threshold j are those with k >= j + 1.
    n_pos = np.cumsum(hist_all[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)
    tp = np.cumsum(hist_obj[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)
    n_gt = obj.sum(axis=1).astype(np.float64)[:, None]
    nonempty = n_gt[:, 0] > 0
    curves = np.where(nonempty[:, None], _f_beta(tp, n_pos, n_gt), 0.0)
    return curves, nonempty


def official_fscore(pred_logits: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> float:
    """Official F of ONE batch of frames (T, H, W): max over t of the mean curve of the non-empty-GT frames, else 0."""
    curves, nonempty = fscore_curves(pred_logits, gt)
    return float(curves[nonempty].mean(axis=0).max()) if nonempty.any() else 0.0


def fscore_binary_per_frame(
    pred_logits: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Plain F (beta^2 0.3) of the hard mask sigmoid > 0.5: ((T,) float64, (T,) bool GT non-empty); 0 where empty."""
    p, g = _pair(pred_logits, gt)
    pos = sigmoid_scores(p) > 0.5
    obj = g > 0
    tp = (pos & obj).sum(axis=(1, 2)).astype(np.float64)
    n_gt = obj.sum(axis=(1, 2)).astype(np.float64)
    f = _f_beta(tp, pos.sum(axis=(1, 2)).astype(np.float64), n_gt)
    nonempty = n_gt > 0
    return np.where(nonempty, f, 0.0), nonempty


def fscore_binary(pred_logits: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> float:
    """Plain hard-mask F of one video: mean over its non-empty-GT frames; 0 when every frame is empty."""
    f, nonempty = fscore_binary_per_frame(pred_logits, gt)
    return float(f[nonempty].mean()) if nonempty.any() else 0.0


# ----------------------------------------------------------------------------------------------- binary, dataset
class BinaryMetricAccumulator:
    """Official binary metrics over a dataset, one video at a time (S4, MS3, V3).

    `add(pred, gt)` takes pred logits or a hard mask (T, h, w) and GT (T, H, W), resizes pred to (H, W) with nearest
    neighbour, and returns the video's row. `aggregate()` gives {miou, fscore, fscore_binary, n_videos, n_frames,
    fscore_batch_size}; with fscore_batch_size = B, consecutive groups of B videos (in `add` order, last group
    possibly smaller) pool their non-empty frames into one F curve, as loaders with batch size B do. B = 1 (default)
    is the official protocol and the only order-independent choice. mIoU and fscore_binary are always per video.
    """

    def __init__(self, fscore_batch_size: int = 1) -> None:
        if fscore_batch_size < 1:
            raise ValueError(f"fscore_batch_size must be >= 1, got {fscore_batch_size}")
        self.fscore_batch_size = fscore_batch_size
        self.rows: list[dict[str, Any]] = []
        self._curve_sums: list[np.ndarray] = []  # per video: (255,) sum of its non-empty frames' curves
        self._nonempty: list[int] = []

    def add(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, name: str = "") -> dict[str, Any]:
        """Score one video; returns {name, miou, fscore (this video alone), fscore_binary, n_frames, n_nonempty}."""
        p, g = _pair(pred, gt)
        ious = jaccard_per_frame(p, g)
        curves, nonempty = fscore_curves(p, g)
        n_nonempty = int(nonempty.sum())
        curve_sum = curves[nonempty].sum(axis=0) if n_nonempty else np.zeros(N_THRESHOLDS)
        row = {
            "name": name,
            "miou": float(ious.mean()),
            "fscore": float((curve_sum / n_nonempty).max()) if n_nonempty else 0.0,
            "fscore_binary": fscore_binary(p, g),
            "n_frames": int(g.shape[0]),
            "n_nonempty": n_nonempty,
        }
        self.rows.append(row)
        self._curve_sums.append(curve_sum)
        self._nonempty.append(n_nonempty)
        return row

    def batch_fscores(self) -> list[float]:
        """Official F of each batch of `fscore_batch_size` consecutive videos."""
        b = self.fscore_batch_size
        scores = []
        for start in range(0, len(self.rows), b):
            n = sum(self._nonempty[start : start + b])
            total = np.sum(self._curve_sums[start : start + b], axis=0)
            scores.append(float((total / n).max()) if n else 0.0)
        return scores

    def aggregate(self) -> dict[str, Any]:
        """Dataset scores; raises ValueError when no video was added."""
        if not self.rows:
            raise ValueError("no videos were scored")
        return {
            "miou": float(np.mean([r["miou"] for r in self.rows])),
            "fscore": float(np.mean(self.batch_fscores())),
            "fscore_binary": float(np.mean([r["fscore_binary"] for r in self.rows])),
            "n_videos": len(self.rows),
            "n_frames": int(sum(r["n_frames"] for r in self.rows)),
            "fscore_batch_size": self.fscore_batch_size,
        }


# ----------------------------------------------------------------------------------------------- semantic
def semantic_frame_stats(
    pred: np.ndarray, gt: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame and class, from (T, H, W) class indices: (IoU (T, C), F (T, C), U > 0 (T, C) bool)."""
    t = gt.shape[0]
    for arr, what in ((pred, "prediction"), (gt, "ground truth")):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{what} has class indices outside 0..{num_classes - 1}")
    offset = num_classes * np.arange(t)[:, None, None]
    p = (pred.astype(np.int64) + offset).ravel()
    g = (gt.astype(np.int64) + offset).ravel()
    size = t * num_classes
    n_pred = np.bincount(p, minlength=size).reshape(t, -1).astype(np.float64)
    n_gt = np.bincount(g, minlength=size).reshape(t, -1).astype(np.float64)
    inter = np.bincount(g[p == g], minlength=size).reshape(t, -1).astype(np.float64)
    union = n_pred + n_gt - inter
    iou = inter / (union + SEMANTIC_IOU_EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec, rec = inter / n_pred, inter / n_gt  # no eps: official; 0/0 -> NaN -> F 0
        f = np.nan_to_num((1 + BETA2) * prec * rec / (BETA2 * prec + rec), nan=0.0)
    return iou, f, union > 0


class SemanticMetricAccumulator:
    """Official AVSS semantic mIoU and F over a dataset, one video at a time.

    `add(pred, gt)` takes (T, h, w) predicted class indices (argmax your logits first) and (T, H, W) GT indices.
    `aggregate()` returns {miou, fscore (padded to pad_to, official), miou_unpadded, fscore_unpadded, pad_to,
    n_videos, n_frames, n_padded_frames, n_classes, per_class_iou, per_class_fscore (padded)}. `pad_to=None`
    disables padding (then the padded and unpadded numbers are equal).
    """

    def __init__(self, num_classes: int = 71, pad_to: int | None = 10) -> None:
        self.num_classes = num_classes
        self.pad_to = pad_to
        self.rows: list[dict[str, Any]] = []
        self._iou = np.zeros(num_classes)
        self._f = np.zeros(num_classes)
        self._count = np.zeros(num_classes, dtype=np.int64)
        self._n_padded = 0

    def add(self, pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, name: str = "") -> dict[str, Any]:
        """Score one video; the row's miou/fscore are over the classes this video predicts or contains, unpadded."""
        p, g = _pair(pred, gt)
        iou, f, seen = semantic_frame_stats(p, g, self.num_classes)
        iou_sum, f_sum, count = (iou * seen).sum(0), (f * seen).sum(0), seen.sum(0)
        self._iou += iou_sum
        self._f += f_sum
        self._count += count
        n_frames = int(g.shape[0])
        self._n_padded += max(0, (self.pad_to or 0) - n_frames)
        classes = count > 0
        row = {
            "name": name,
            "miou": float((iou_sum[classes] / count[classes]).mean()),
            "fscore": float((f_sum[classes] / count[classes]).mean()),
            "n_frames": n_frames,
            "classes": [int(c) for c in np.flatnonzero(classes)],
        }
        self.rows.append(row)
        return row

    def _per_class(self, padded: bool) -> tuple[np.ndarray, np.ndarray]:
        iou, f, count = self._iou.copy(), self._f.copy(), self._count.copy()
        if padded:
            # A padded frame is background in both: background gets U > 0, IoU 1 and F 1; no other class changes.
            iou[0] += self._n_padded
            f[0] += self._n_padded
            count[0] += self._n_padded
        safe = np.maximum(count, 1)
        return np.where(count > 0, iou / safe, 0.0), np.where(count > 0, f / safe, 0.0)

    def aggregate(self) -> dict[str, Any]:
        """Dataset scores; raises ValueError when no video was added."""
        if not self.rows:
            raise ValueError("no videos were scored")
        iou_pad, f_pad = self._per_class(padded=True)
        iou_raw, f_raw = self._per_class(padded=False)
        return {
            "miou": float(iou_pad.mean()),
            "fscore": float(f_pad.mean()),
            "miou_unpadded": float(iou_raw.mean()),
            "fscore_unpadded": float(f_raw.mean()),
            "pad_to": self.pad_to,
            "n_videos": len(self.rows),
            "n_frames": int(sum(r["n_frames"] for r in self.rows)),
            "n_padded_frames": self._n_padded,
            "n_classes": self.num_classes,
            "per_class_iou": [float(v) for v in iou_pad],
            "per_class_fscore": [float(v) for v in f_pad],
        }
