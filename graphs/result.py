"""result.json: everything a run decided, enough to reproduce it."""

from __future__ import annotations

import platform
from typing import Any

import torch
import transformers

from graphs.context import RunContext
from tools.datamodel import FrameMasks
from tools.frames import FrameRef
from tools.outputs import mask_file_name, write_masks_folder, write_overlay
from tools.runfiles import write_json_atomic

RESULT_VERSION = 1


def model_provenance(ctx: RunContext) -> list[dict[str, Any]]:
    """Each model the run used: its spec, and the hub commit it was loaded from when transformers knows it."""
    rows = []
    for spec in ctx.settings.model_specs():
        adapter = ctx.registry.get(spec)
        config = getattr(getattr(adapter, "model", None), "config", None)
        rows.append({**spec.model_dump(), "commit": getattr(config, "_commit_hash", None)})
    return rows


def build_result(
    ctx: RunContext, state: dict[str, Any], masks: list[FrameMasks], outputs: dict[str, str], extra: dict | None = None
) -> dict:
    """The result.json document for a finished run."""
    stem = state["clip"]["name"]
    captions, tags = state.get("captions"), state.get("tags")
    frames = []
    for frame, frame_masks, detections in zip(state["frames"], masks, state["detections"], strict=True):
        k = frame["index"]
        frames.append(
            {
                "index": k,
                "timestamp_s": round(frame["timestamp_s"], 4),
                # The presentation time of the video frame on screen at timestamp_s (None for image files).
                "pts_s": None if frame.get("pts_s") is None else round(frame["pts_s"], 4),
                "mask_file": f"masks/{mask_file_name(stem, k)}",
                "captions": captions[k] if captions else [],
                "tags": tags[k] if tags else [],
                "phrases": state["phrases"][k],
                "detections": detections,
                **frame_masks.to_dict(),
            }
        )
    usage = state.get("usage", {})
    return {
        "version": RESULT_VERSION,
        "meaningful": ctx.settings.meaningful,
        "clip": state["clip"],
        "audio": {k: v for k, v in state["audio"].items() if k != "files"},
        "translator": state.get("translator"),
        "frames": frames,
        "models": model_provenance(ctx),
        "settings": ctx.settings.model_dump(mode="json"),
        "device": ctx.registry.device,
        "timings_s": state.get("timings_s", {}),
        "model_load_s": ctx.registry.load_seconds,
        "usage": usage,
        "tokens": {
            "input": sum(u.get("input_tokens", 0) for u in usage.values()),
            "output": sum(u.get("output_tokens", 0) for u in usage.values()),
        },
        "warnings": state.get("warnings", []),
        "outputs": outputs,
        **(extra or {}),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }


def write_outputs(
    ctx: RunContext, state: dict[str, Any], masks: list[FrameMasks], stage: Any, extra: dict | None = None
) -> dict[str, str]:
    """Write masks/, overlay.mp4 and, last, result.json (whose presence marks a complete run); returns their paths.

    `stage` is the running emit stage (its clock times the emit itself); `extra` adds graph-specific fields.
    """
    frames = [FrameRef(**f) for f in state["frames"]]
    mask_files = write_masks_folder(ctx.run_dir / "masks", state["clip"]["name"], masks)
    outputs = {"masks": str(ctx.run_dir / "masks"), "result": str(ctx.run_dir / "result.json")}
    if ctx.settings.write_overlay:
        source = state["source"]
        audio_source = source["path"] if source["kind"] == "video" else source["audio_path"]
        if not state["clip"].get("has_audio", audio_source is not None):
            audio_source = None
        duration = state["clip"].get("duration_s") or frames[-1].timestamp_s + ctx.settings.audio_window_s
        write_overlay(ctx.run_dir / "overlay.mp4", frames, masks, duration, audio_source)
        outputs["overlay"] = str(ctx.run_dir / "overlay.mp4")
    outputs["trace"] = str(ctx.tracer.path) if ctx.tracer.path else ""
    timings = {**state.get("timings_s", {}), stage.name: stage.elapsed_s()}
    result = build_result(ctx, {**state, "timings_s": timings}, masks, outputs, extra)
    write_json_atomic(ctx.run_dir / "result.json", result)
    overlay_note = ", overlay.mp4" if "overlay" in outputs else ""
    ctx.progress("emit", f"{len(mask_files)} masks, result.json{overlay_note}")
    return outputs
