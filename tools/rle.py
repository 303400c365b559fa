"""COCO run-length encoding of bool masks, through pycocotools (the format every COCO tool reads)."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
from pycocotools import mask as coco_mask


class RLE(TypedDict):
    """COCO compressed RLE: size = [height, width]; counts = the compressed column-major run lengths (ASCII)."""

    size: list[int]
    counts: str


def encode_rle(mask: np.ndarray) -> RLE:
    """Encode a bool (H, W) mask as COCO compressed RLE with `counts` as a str (JSON-ready)."""
    if mask.ndim != 2:
        raise ValueError(f"RLE encodes one (H, W) mask, got shape {mask.shape}")
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def decode_rle(rle: RLE) -> np.ndarray:
    """Decode COCO compressed RLE back to a bool (H, W) mask."""
    encoded = {"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}
    return coco_mask.decode(encoded).astype(bool)
