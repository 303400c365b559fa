"""A disk cache for expensive model answers (ALM captions, LLM translations), keyed by everything that decides
them: model id, face and revision, prompt version, settings and a hash of the input.

Values are JSON files written atomically; there are no locks, so concurrent writers never block each other (the
last identical answer wins). Delete the folder, or run with --no-cache, to start afresh.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from tools.errors import InputError
from tools.runfiles import write_json_atomic


def default_cache_dir() -> Path:
    """$OPENAVS_CACHE_DIR, else $XDG_CACHE_HOME/openavs-agent, else ~/.cache/openavs-agent."""
    if os.environ.get("OPENAVS_CACHE_DIR"):
        return Path(os.environ["OPENAVS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "openavs-agent"


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class DiskCache:
    """JSON values under `root/<namespace>/<key[:2]>/<key>.json`; `key` is the sha256 of the key parts."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self.write_errors = 0
        self.last_write_error: str | None = None

    @staticmethod
    def key(**parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def _path(self, namespace: str, key: str) -> Path:
        return self.root / namespace / key[:2] / f"{key}.json"

    def get(self, namespace: str, key: str) -> Any | None:
        """The stored value, or None when absent or unreadable (a damaged entry is a miss, not an error)."""
        path = self._path(namespace, key)
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, namespace: str, key: str, value: Any) -> None:
        """Store `value`. A write that fails (disk full, folder made read-only) is counted in `write_errors`, not
        raised: the answer it would have kept is already in hand, and losing the copy must not fail the run."""
        try:
            write_json_atomic(self._path(namespace, key), value)
        except OSError as err:
            self.write_errors += 1
            self.last_write_error = f"{type(err).__name__}: {err.strerror or err}"


def open_cache(folder: str | Path | None = None) -> DiskCache:
    """The cache in `folder` (default_cache_dir() when None), created if need be. Raises InputError when it cannot
    be a writable folder, before the run starts rather than at its first cached answer."""
    root = Path(folder) if folder is not None else default_cache_dir()
    fix = "choose another with --cache-dir or $OPENAVS_CACHE_DIR, or run with --no-cache"
    if root.exists() and not root.is_dir():
        raise InputError(f"cache folder {root}: not a folder; {fix}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cache folder {root}: cannot be created ({err.strerror or err}); {fix}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise InputError(f"cache folder {root}: not writable; {fix}")
    return DiskCache(root)
