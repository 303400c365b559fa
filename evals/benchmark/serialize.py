"""One model, one caller at a time: adapters shared by worker threads are wrapped so their methods take a lock.

Clips run in parallel threads that share one ModelRegistry (each model is loaded once). A model object is not
made for concurrent calls: Hugging Face fast tokenizers raise "Already borrowed" when two threads use one, and a
GPU runs one batch of a model at a time anyway. So each adapter gets its own lock: different models (and the LLM,
file decoding and writing) still overlap across clips, but one model serves one clip at a time.
"""

from __future__ import annotations

import functools
import inspect
import threading
from typing import Any

from graphs.context import PipelineSettings
from tools.models.registry import ModelRegistry


class Serialized:
    """Proxy of an adapter: attributes pass through; every bound-method call holds the adapter's lock."""

    def __init__(self, adapter: Any) -> None:
        self._adapter = adapter
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._adapter, name)
        if not inspect.ismethod(value):  # only the adapter's own methods: its `model`, `processor` pass through
            return value

        @functools.wraps(value)
        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return locked


def serialize_models(registry: ModelRegistry, settings: PipelineSettings) -> None:
    """Load every model `settings` needs (in this thread) and put a Serialized proxy in its place."""
    for spec in settings.model_specs():
        adapter = registry.get(spec)
        if not isinstance(adapter, Serialized):
            registry.install(spec, Serialized(adapter))
