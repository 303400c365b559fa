"""Small thumbnails as data URIs, so a report page can carry its pictures inside itself (no files beside it)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from tools.overlay import render_overlay

__all__ = ["THUMB_SIDE", "image_data_uri", "overlay_thumbnail", "shrink"]

THUMB_SIDE = 160  # px of the longer side: enough to recognise a frame, small enough for 100+ of them in a page


def shrink(image: Image.Image, max_side: int = THUMB_SIDE) -> Image.Image:
    """An RGB copy of `image` whose longer side is at most `max_side` px (never enlarged)."""
    out = image.convert("RGB")  # convert copies, so thumbnail() below never touches the caller's image
    out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def image_data_uri(image: Image.Image, max_side: int = THUMB_SIDE, quality: int = 82) -> str:
    """`data:image/jpeg;base64,...` of the image shrunk to `max_side` (JPEG: a 160 px frame is a few kB)."""
    buffer = io.BytesIO()
    shrink(image, max_side).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def overlay_thumbnail(frame: Image.Image, masks: Sequence[np.ndarray], max_side: int = THUMB_SIDE) -> Image.Image:
    """The masks tinted over the frame at thumbnail size (mask i in overlay.PALETTE[i], no labels: text is
    unreadable at this size, so a page lists the phrases beside it in the same colours).

    Shrinking first and resizing the masks nearest-neighbour keeps a page of 1080p frames fast; masks whose
    shape is not the frame's (H, W) are stretched onto it, as the mask of a rotated or rescaled frame would be.
    """
    small = shrink(frame, max_side)
    resized = []
    for mask in masks:
        layer = Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, mode="L")
        resized.append(np.asarray(layer.resize(small.size, Image.Resampling.NEAREST)) > 127)
    return render_overlay(small, resized, [""] * len(resized))
