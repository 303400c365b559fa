"""Test-wide settings (offline hub, deterministic CPU threads) and fixtures shared by several test modules."""

from __future__ import annotations

import os
import tempfile
import threading

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)
os.environ.pop("LANGSMITH_TRACING", None)
os.environ["OPENAVS_CACHE_DIR"] = tempfile.mkdtemp(prefix="openavs-test-cache-")


@pytest.fixture
def first_frame_decode_fails(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """graphs.stages.extract_frames raising InputError("simulated unreadable frame") on its first call and decoding
    from the second on; returns the names of the threads that called it, in order."""
    from graphs import stages
    from tools.errors import InputError

    real_extract = stages.extract_frames
    calls: list[str] = []

    def extract_once_failing(*args, **kwargs):
        calls.append(threading.current_thread().name)
        if len(calls) == 1:
            raise InputError("simulated unreadable frame")
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(stages, "extract_frames", extract_once_failing)
    return calls
