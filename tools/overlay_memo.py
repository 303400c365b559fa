"""Round overlays already drawn in a run, found again by what they show.

A refine round whose masks on a frame are the ones an earlier round drew there (a replayed track, a re-grounding
that found the same boxes) copies that picture instead of decoding the masks, drawing and encoding it again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from pathlib import Path

from tools.datamodel import FrameMasks
from tools.frames import FrameRef


def overlay_key(frame: FrameRef, masks: FrameMasks, side: int) -> bytes:
    """What an overlay shows: the frame file (path, mtime, size), the longer side it is drawn at (px) and each
    object's phrase and mask (its COCO RLE), in drawing order (which picks the colours)."""
    stat = os.stat(frame.path)
    digest = hashlib.blake2b(f"{frame.path}\0{stat.st_mtime_ns}\0{stat.st_size}\0{side}".encode(), digest_size=16)
    for obj in masks.objects:
        digest.update(f"\0{obj.phrase}\0{obj.rle['counts']}".encode())
    return digest.digest()


class OverlayMemo:
    """Where each overlay was drawn in this run (key -> file). A file is reused only while it is unchanged since
    it was drawn (same mtime and size), so a path written over later is never copied as the old picture.
    Thread-safe: a round draws its frames on worker threads."""

    def __init__(self) -> None:
        self._drawn: dict[bytes, tuple[Path, int, int]] = {}
        self._lock = threading.Lock()

    def copy_to(self, key: bytes, path: Path) -> bool:
        """Put the picture drawn for `key` at `path`; False when there is none (the caller draws it)."""
        with self._lock:
            found = self._drawn.get(key)
        if found is None:
            return False
        source, mtime_ns, size = found
        try:
            stat = os.stat(source)
        except FileNotFoundError:
            return False
        if (stat.st_mtime_ns, stat.st_size) != (mtime_ns, size):
            return False
        if source != path:
            shutil.copyfile(source, path)
        return True

    def remember(self, key: bytes, path: Path) -> None:
        """`path` now holds the picture for `key`."""
        stat = os.stat(path)
        with self._lock:
            self._drawn[key] = (path, stat.st_mtime_ns, stat.st_size)
