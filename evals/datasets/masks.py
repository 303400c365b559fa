"""Reading and writing AVSBench mask PNGs. Unreadable files raise InputError naming the file.

Binary masks: `np.array(Image.open(p)) > 0` (the official loaders accept L, P, 1 or RGB files); written as 0/255
L-mode PNGs like the AVSBench-object GT. Semantic masks: labels_rgb colours decoded with the VOC palette
(evals.datasets.palette); class-index PNGs (P or L/I mode) read their pixel values as class indices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from evals.datasets.palette import AVSS_NUM_CLASSES, decode_voc_rgb, voc_palette
from tools.errors import InputError


def _open(path: Path, mode: str | None = None) -> np.ndarray:
    """Pixel array of an image file, optionally converted to `mode`."""
    if not path.is_file():
        raise InputError(f"missing mask file: {path}")
    try:
        with Image.open(path) as im:
            return np.array(im.convert(mode) if mode else im)
    except (OSError, SyntaxError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise InputError(f"unreadable image {path}: {err}") from err


def load_binary_mask(path: Path) -> np.ndarray:
    """(H, W) bool: pixel > 0. Multi-channel files count a pixel as set when any colour channel is non-zero."""
    arr = _open(path)
    if arr.ndim == 3:
        # RGB(A): any colour channel; LA: the luminance channel. Alpha never decides.
        arr = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        return (arr > 0).any(axis=-1)
    return arr > 0


def load_semantic_labels(path: Path, num_classes: int = AVSS_NUM_CLASSES) -> np.ndarray:
    """labels_rgb PNG -> (H, W) int64 class indices, as the official code reads it (convert to RGB, match colours).

    Colours outside the first `num_classes` VOC colours read as background (official behaviour).
    """
    classes, _unknown = decode_voc_rgb(_open(path, "RGB"), num_classes)
    return classes


def load_index_mask(path: Path, num_classes: int = AVSS_NUM_CLASSES) -> np.ndarray:
    """Predicted semantic mask -> (H, W) int64 class indices.

    P, L, I or 1 mode: the pixel value (palette index) is the class index. RGB(A): decoded with the VOC palette,
    and a colour that is not one of the `num_classes` VOC colours is an InputError (a prediction should not
    contain unknown colours). An index >= num_classes is an InputError.
    """
    if not path.is_file():
        raise InputError(f"missing prediction file: {path}")
    try:
        with Image.open(path) as im:
            mode = im.mode
            arr = np.array(im.convert("RGB") if mode in ("RGB", "RGBA") else im)
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"unreadable image {path}: {err}") from err
    if arr.ndim == 3:
        classes, unknown = decode_voc_rgb(arr, num_classes)
        if unknown:
            raise InputError(f"prediction {path}: {unknown} pixels of a colour that is no VOC class colour")
        return classes
    classes = arr.astype(np.int64)
    if classes.size and (classes.min() < 0 or classes.max() >= num_classes):
        raise InputError(f"prediction {path}: class index {int(classes.max())} outside 0..{num_classes - 1}")
    return classes


def write_binary_mask(path: Path, mask: np.ndarray) -> None:
    """Write a (H, W) mask (bool or 0/1) as a 0/255 L-mode PNG, creating parent folders."""
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(path)  # uint8 (H, W) -> L mode


def write_index_mask(path: Path, classes: np.ndarray) -> None:
    """Write (H, W) class indices (0..255) as a P-mode PNG whose palette is the VOC colour map.

    Read back as an index it gives the classes; converted to RGB it gives the labels_rgb colours.
    """
    if classes.ndim != 2:
        raise ValueError(f"expected (H, W) class indices, got shape {classes.shape}")
    if classes.size and (classes.min() < 0 or classes.max() > 255):
        raise ValueError("class indices must lie in 0..255 for a palette PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(classes.astype(np.uint8))
    im.putpalette(voc_palette(256).tobytes())  # L + palette -> P mode, indices kept
    im.save(path)
