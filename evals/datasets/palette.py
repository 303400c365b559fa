"""The PASCAL-VOC colour map AVSBench-semantic uses for labels_rgb, and its inverse.

Colour of class j: the bits of j are dealt round-robin to R, G, B from the most significant bit down (bit 0 -> R
bit 7, bit 1 -> G bit 7, bit 2 -> B bit 7, bit 3 -> R bit 6, ...), exactly the official `_getpallete`. So the
palette INDEX of a colour is the class index; colours are distinct for j < 512.
"""

from __future__ import annotations

from functools import cache

import numpy as np

AVSS_NUM_CLASSES = 71


@cache
def voc_palette(n: int = 256) -> np.ndarray:
    """(n, 3) uint8 colours; row j is the colour of class j (row 0 is black = background)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for j in range(n):
        lab, bit, rgb = j, 7, [0, 0, 0]
        while lab > 0:
            for channel in range(3):
                rgb[channel] |= ((lab >> channel) & 1) << bit
            bit -= 1
            lab >>= 3
        pal[j] = rgb
    pal.flags.writeable = False
    return pal


def decode_voc_rgb(rgb: np.ndarray, num_classes: int = AVSS_NUM_CLASSES) -> tuple[np.ndarray, int]:
    """(H, W, 3) uint8 colours -> ((H, W) int64 class indices, number of pixels of no known colour).

    Exact colour match against the first `num_classes` VOC colours. A pixel of any other colour becomes 0
    (background), as the official code's argmax over an all-false match does; the count lets callers report it.
    """
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) colours, got shape {rgb.shape}")
    pal = voc_palette(num_classes).astype(np.int64)
    keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(keys)
    sorted_keys = keys[order]
    px = rgb.astype(np.int64)
    flat = (px[..., 0] << 16) | (px[..., 1] << 8) | px[..., 2]
    pos = np.clip(np.searchsorted(sorted_keys, flat), 0, len(keys) - 1)
    known = sorted_keys[pos] == flat
    classes = np.where(known, order[pos], 0)
    return classes, int((~known).sum())
