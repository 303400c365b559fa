"""Loads each model once per process, picks the device once, and turns missing weights into one clear line."""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from tools.errors import InputError, ModelUnavailableError
from tools.models.base import DType, ModelSpec
from tools.models.decoding import defer_stop_checks_on_cuda
from tools.models.precision import enable_tf32

# (role, family) -> "module:function" building the adapter from (spec, device); imported only when first used.
LOADERS: dict[tuple[str, str], str] = {
    ("captioner", "qwen2_audio"): "tools.models.captioners:load_qwen2_audio",
    ("captioner", "audio_flamingo3"): "tools.models.captioners:load_audio_flamingo3",
    ("captioner", "qwen2_5_omni"): "tools.models.captioners:load_qwen2_5_omni",
    ("tagger", "clap"): "tools.models.taggers:load_clap",
    ("tagger", "ast"): "tools.models.taggers:load_ast",
    ("grounder", "grounding_dino"): "tools.models.grounding_dino:load_grounding_dino",
    ("segmenter", "sam2"): "tools.models.sam2:load_sam2",
    ("propagator", "sam2_video"): "tools.models.sam2_video:load_sam2_video",
    ("propagator", "sam3_tracker_video"): "tools.models.sam3_video:load_sam3_video",
    ("propagator", "sam2_meta"): "tools.models.sam2_meta:load_sam2_meta_video",
    ("text_segmenter", "sam3"): "tools.models.sam3:load_sam3",
    ("video_segmenter", "sam3_video"): "tools.models.sam3_detect_track:load_sam3_video_segmenter",
    ("critic", "qwen2_5_vl"): "tools.models.critics:load_qwen2_5_vl",
    ("planner", "qwen2_chat"): "tools.models.chat_llm:load_qwen2_chat",
    ("grounder", "sam3"): "tools.models.sam3_roles:load_sam3_grounder",
    ("segmenter", "sam3"): "tools.models.sam3_roles:load_sam3_segmenter",
}

CONFIG_FILE = "config.json"
"""What a transformers model's hub repository always holds: in the cache, the model was downloaded."""


# (role, family) -> "module:function" naming, for a spec, the hub file that holds its weights (None: the model id is a
# local file), for families that load no transformers config.json; imported only when first used.
WEIGHT_FILES: dict[tuple[str, str], str] = {
    ("propagator", "sam2_meta"): "tools.models.sam2_meta:hub_weights_file",
}

HUB_PROBE_TIMEOUT_S = 10.0


def pick_device(requested: str | None = None) -> str:
    """The device for this process: the requested one if usable, else cuda, then mps, then cpu."""
    if requested:
        kind = requested.split(":")[0]
        if kind == "cuda" and not torch.cuda.is_available():
            raise InputError(f"--device {requested}: CUDA is not available on this machine")
        if kind == "mps" and not torch.backends.mps.is_available():
            raise InputError(f"--device {requested}: MPS is not available on this machine")
        if kind not in {"cuda", "mps", "cpu"}:
            raise InputError(f"--device {requested}: expected cpu, cuda, cuda:N or mps")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def torch_dtype(dtype: DType, device: str, auto_accelerated: torch.dtype = torch.float32) -> torch.dtype:
    """The torch dtype for a spec: explicit names as given; `auto` is float32 on CPU and `auto_accelerated`
    (the role's choice, e.g. bfloat16 for large language models) on GPUs."""
    if dtype != "auto":
        return getattr(torch, dtype)
    return torch.float32 if device == "cpu" else auto_accelerated


def ensure_weights_available(spec: ModelSpec) -> None:
    """Fail fast, in under HUB_PROBE_TIMEOUT_S, when a real model's weights cannot be had.

    from_pretrained retries unreachable hubs for tens of seconds; one cache lookup and one bounded metadata
    request answer the same question at once.
    """
    if spec.face != "real" or Path(spec.model_id).expanduser().exists():  # a folder, or a checkpoint file
        return
    weights_file = _hub_weights_file(spec)
    if weights_file is None or Path(spec.model_id).expanduser().is_absolute() or spec.model_id.startswith("."):
        raise ModelUnavailableError(f"{spec.role} model path '{spec.model_id}' does not exist")
    from huggingface_hub import HfApi, try_to_load_from_cache

    cached = try_to_load_from_cache(spec.model_id, weights_file, revision=spec.revision)
    if isinstance(cached, str):
        return
    how = (
        f"download it where the hub is reachable (`{_download_command(spec, weights_file)}`) into HF_HOME "
        f"(now {os.environ.get('HF_HOME', '~/.cache/huggingface')}), or pass {_local_option(spec, weights_file)}"
    )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        raise ModelUnavailableError(
            f"{spec.role} model '{spec.model_id}' is not in the cache and HF_HUB_OFFLINE is set: {how}"
        )
    try:
        HfApi().model_info(spec.model_id, revision=spec.revision, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as err:
        raise ModelUnavailableError(
            f"{spec.role} model '{spec.model_id}' is not cached and the hub cannot be reached "
            f"({type(err).__name__}): {how}"
        ) from err


def _hub_weights_file(spec: ModelSpec) -> str | None:
    target = WEIGHT_FILES.get((spec.role, spec.family))
    if target is None:
        return CONFIG_FILE
    module_name, func_name = target.split(":")
    return getattr(importlib.import_module(module_name), func_name)(spec)


def _download_command(spec: ModelSpec, weights_file: str) -> str:
    return f"hf download {spec.model_id}" + ("" if weights_file == CONFIG_FILE else f" {weights_file}")


def _local_option(spec: ModelSpec, weights_file: str) -> str:
    if spec.role == "planner":
        return "a local folder with --planner local:PATH"
    if weights_file == CONFIG_FILE:
        return f"a local folder with --{spec.role} PATH"
    return f"a local copy of {weights_file} with --{spec.role} {spec.family}:PATH"


def load_pretrained(loader: Callable[..., Any], spec: ModelSpec, **kwargs: Any) -> Any:
    """Call a `from_pretrained` for a real spec, turning hub and file errors into ModelUnavailableError."""
    ensure_weights_available(spec)
    try:
        return loader(spec.model_id, revision=spec.revision, **kwargs)
    except OSError as err:
        raise ModelUnavailableError(
            f"{spec.role} model '{spec.model_id}' could not be loaded: {str(err).splitlines()[0]}"
        ) from err


def model_for_face(
    spec: ModelSpec,
    device: str,
    pretrained: tuple[Callable[..., Any], Callable[..., Any]],
    tiny: Callable[[], tuple[Any, Any]],
    random: Callable[[], tuple[Any, Any]],
) -> tuple[Any, Any, torch.dtype]:
    """spec's model and processor, not yet moved to `device`, and the dtype the model runs in there (float32 unless
    spec.dtype names another). `real` loads them with the `pretrained` pair of from_pretrained functions (hub id or
    folder; the model in that dtype); `tiny` and `random` call their builders."""
    dtype = torch_dtype(spec.dtype, device, auto_accelerated=torch.float32)
    if spec.face == "real":
        load_model, load_processor = pretrained
        return load_pretrained(load_model, spec, dtype=dtype), load_pretrained(load_processor, spec), dtype
    if spec.face == "tiny":
        return (*tiny(), dtype)
    if spec.face == "random":
        return (*random(), dtype)
    raise InputError(f"{spec.role} face '{spec.face}' is not one of real, tiny, random")


class ModelRegistry:
    """Lazily built adapters keyed by (role, family, model id, face, revision, dtype) on one device."""

    def __init__(self, device: str | None = None) -> None:
        self.device = pick_device(device)
        if self.device.startswith("cuda"):
            enable_tf32()
            defer_stop_checks_on_cuda()
        self._adapters: dict[tuple, Any] = {}
        self.load_seconds: dict[str, float] = {}
        """Seconds each adapter took to build, by role (built ones only, not installed ones)."""
        self._lock = threading.Lock()  # worker threads share one registry: each model is built exactly once

    def get(self, spec: ModelSpec) -> Any:
        """The adapter for `spec`, built on first use and reused afterwards."""
        key = (spec.role, spec.family, spec.model_id, spec.face, spec.revision, spec.dtype)
        with self._lock:
            if key not in self._adapters:
                self._adapters[key] = self._build(spec)
            return self._adapters[key]

    def install(self, spec: ModelSpec, adapter: Any) -> None:
        """Put a ready adapter (a scripted fake, a preloaded model) in place of building `spec`."""
        self._adapters[(spec.role, spec.family, spec.model_id, spec.face, spec.revision, spec.dtype)] = adapter

    def _build(self, spec: ModelSpec) -> Any:
        target = LOADERS.get((spec.role, spec.family))
        if target is None:
            known = sorted(f for r, f in LOADERS if r == spec.role)
            raise InputError(f"unknown {spec.role} family '{spec.family}'; known: {', '.join(known)}")
        module_name, func_name = target.split(":")
        loader = getattr(importlib.import_module(module_name), func_name)
        start = time.perf_counter()
        adapter = loader(spec, self.device)
        self.load_seconds[spec.role] = round(time.perf_counter() - start, 3)
        return adapter
