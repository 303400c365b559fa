"""COCO run-length encoding of bool masks, through pycocotools (the format every COCO tool reads).

Areas, unions and boxes are computed on the runs themselves (pycocotools' C code), without decoding to pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import numpy as np
from pycocotools import mask as coco_mask


class RLE(TypedDict):
    """COCO compressed RLE: size = [height, width]; counts = the compressed column-major run lengths (ASCII)."""

    size: list[int]
    counts: str


def _coco(rle: RLE) -> dict:
    return {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode a bool (H, W) mask as COCO compressed RLE with `counts` as a str (JSON-ready)."""
    if mask.ndim != 2:
        raise ValueError(f"RLE encodes one (H, W) mask, got shape {mask.shape}")
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode COCO compressed RLE back to a bool (H, W) mask."""
    return coco_mask.decode(_coco(rle)).astype(bool)


def rle_area(rle: RLE) -> int:
    """Pixels set in the mask."""
    return int(coco_mask.area(_coco(rle)))


def rle_union_area(rles: Sequence[RLE]) -> int:
    """Pixels set in any of the masks (all of one size); 0 for none."""
    if not rles:
        return 0
    return int(coco_mask.area(coco_mask.merge([_coco(r) for r in rles], intersect=False)))


def rle_box(rle: RLE) -> tuple[float, float, float, float]:
    """Tight xyxy box (px, exclusive right/bottom edge) of the mask; (0, 0, 0, 0) when it is empty."""
    x, y, w, h = (float(v) for v in coco_mask.toBbox(_coco(rle)))
    return (x, y, x + w, y + h)


def rle_iou(a: Sequence[RLE], b: Sequence[RLE]) -> np.ndarray:
    """Pairwise IoU of masks a (m of them) and b (n, all of one size) -> float64 (m, n); two empty masks have IoU 0."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    sizes = {tuple(r["size"]) for r in (*a, *b)}
    if len(sizes) > 1:
        raise ValueError(f"masks differ in shape: {sorted(sizes)}")
    return np.asarray(coco_mask.iou([_coco(r) for r in a], [_coco(r) for r in b], [0] * len(b)), dtype=np.float64)
