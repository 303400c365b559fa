"""Where a benchmark number came from: code version, lock file, models, device and library versions."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("torch", "transformers", "langgraph", "numpy")
GIT_TIMEOUT_S = 10


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def git_state() -> dict[str, Any]:
    """{commit, dirty}: HEAD and whether tracked or untracked (not ignored) files differ; None outside git."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain")
    return {"commit": commit.strip() if commit else None, "dirty": bool(status.strip()) if status is not None else None}


def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, None when it is missing."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def library_versions() -> dict[str, str | None]:
    """Python and the installed versions of the libraries that decide the numbers."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def model_rows(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct models the clips' result.json files name (role, family, id, face, revision, hub commit)."""
    rows: dict[tuple, dict[str, Any]] = {}
    for result in results:
        for model in result.get("models", []):
            key = tuple(str(model.get(k)) for k in ("role", "family", "model_id", "face", "revision", "commit"))
            rows.setdefault(key, model)
    return list(rows.values())


def provenance(
    results: Sequence[dict[str, Any]], *, settings: dict[str, Any] | None, device: str | None, fscore_batch_size: int
) -> dict[str, Any]:
    """The provenance block of metrics.json."""
    devices = sorted({str(r["device"]) for r in results if r.get("device")})
    return {
        "git": git_state(),
        "uv_lock_sha256": file_sha256(REPO_ROOT / "uv.lock"),
        "settings": settings,
        "models": model_rows(results),
        "device": devices[0] if len(devices) == 1 else (devices or device),
        "versions": library_versions(),
        "fscore_batch_size": fscore_batch_size,
        "platform": platform.platform(),
    }
