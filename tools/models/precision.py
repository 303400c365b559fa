"""Precision scoped to one model call: bfloat16 autocast on CUDA only, never process-wide."""

from __future__ import annotations

import contextlib

import torch


def scoped_autocast(device: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for the block when `device` is CUDA; a no-op elsewhere (CPU autocast is slower here)."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
