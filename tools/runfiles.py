"""Atomic writes for everything a run produces, so a failed run never leaves a file that looks complete.

A file is written under a hidden temporary name in its destination folder and renamed into place (`os.replace`
is atomic on one filesystem); a folder of files is filled under a `.partial` name and renamed as a whole.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tools.errors import InputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


MASK_PNG_LEVEL = 1
"""zlib level of mask PNGs: two-valued masks compress well at any level; level 1 writes a 640x360 mask in a
quarter of level 6's time (0.7 vs 2.6 ms), and the file is a few kB either way."""


def write_mask_png(path: str | Path, mask: np.ndarray) -> None:
    """Write a bool (H, W) mask in the AVSBench convention: single-channel 8-bit PNG, 0 = background, 255 = object."""
    if mask.ndim != 2:
        raise ValueError(f"a mask PNG holds one (H, W) mask, got shape {mask.shape}")
    with atomic_path(path) as tmp:
        image = Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")
        image.save(tmp, format="PNG", compress_level=MASK_PNG_LEVEL)


def read_mask_png(path: str | Path) -> np.ndarray:
    """Read a mask PNG in any mode (L, P, 1) as bool (H, W): True where the stored value is non-zero."""
    with Image.open(path) as image:
        return np.array(image) > 0


@contextmanager
def staged_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty `<path>.partial` folder to fill; on success it replaces `path` as a whole, on error it goes."""
    path = Path(path)
    staging = path.with_name(path.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
        shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def require_folder_path(folder: Path, flag: str) -> None:
    """InputError (naming `flag`, e.g. --out) when `folder` is a file or lies under one, so that no folder can be
    there. Permissions are not judged here: creating the folder finds them out."""
    for existing in (folder, *folder.absolute().parents):
        if existing.exists():
            if existing.is_dir():
                return
            if existing == folder:
                raise InputError(f"{flag} {folder} is a file, not a folder")
            raise InputError(f"{flag} {folder}: {existing} is a file, so no folder can be made under it")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_input_json(path: Path) -> Any:
    """The JSON in `path`, a file the user supplied (a dataset's, a run folder's): InputError, one line, when it
    cannot be read or parsed."""
    try:
        return read_json(path)
    except (OSError, ValueError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{path}: not readable as JSON ({str(err).splitlines()[0]})") from None
