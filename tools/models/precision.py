"""Precision: bfloat16 autocast scoped to one model call on CUDA only; TF32 float32 matmuls on CUDA."""

from __future__ import annotations

import contextlib

import torch


def scoped_autocast(device: str) -> contextlib.AbstractContextManager:
    """bfloat16 autocast for the block when `device` is CUDA; a no-op elsewhere (CPU autocast is slower here)."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def enable_tf32() -> None:
    """Let float32 matmuls and convolutions on CUDA use TF32 tensor cores (Ampere and later; ignored before).

    Process-wide by nature (a torch flag); set when a registry is made for a CUDA device. It is what makes the
    float32 GroundingDINO fast on GPUs: its inputs keep float32 range, with a 10-bit mantissa inside the matmuls.
    """
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
