"""Cost and latency per pipeline stage, summed over the clips' result.json files.

Per stage: seconds (total, per clip, per frame, median and 95th percentile per clip), model calls and tokens.
Calls: captioner and translator from result.json "usage" (a cache hit costs 0 calls and 0 tokens); grounder =
its batched detect calls (frames with phrases, in batches of GroundingDINO's batch size on the run's device);
segmenter = one call per frame with at least one box. Model loading is a one-time cost of the process (the
registry is shared), so it is reported per role as the largest value any clip's result.json saw, not summed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tools.models.grounding_dino import batch_size_for

STAGE_ROLE = {"describe_audio": "captioner", "translate": "translator", "ground": "grounder", "segment": "segmenter"}


def _calls(result: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per role: calls, input_tokens, output_tokens of one clip."""
    usage = result.get("usage", {})
    keys = ("calls", "input_tokens", "output_tokens")
    out = {role: {k: int(usage.get(role, {}).get(k, 0)) for k in keys} for role in ("captioner", "translator")}
    frames = result.get("frames", [])
    grounded = sum(1 for f in frames if f.get("phrases"))
    batch = batch_size_for(result.get("device") or "cpu")
    out["grounder"] = {"calls": math.ceil(grounded / batch), "input_tokens": 0, "output_tokens": 0}
    out["segmenter"] = {
        "calls": sum(1 for f in frames if f.get("detections", {}).get("boxes")),
        "input_tokens": 0,
        "output_tokens": 0,
    }
    return out


def aggregate_costs(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{n_clips, n_frames, stages: {stage: {...}}, total: {...}, model_load_s: {role: s}} over finished clips."""
    n_clips = len(results)
    n_frames = sum(len(r.get("frames", [])) for r in results)
    stage_names: list[str] = []
    for r in results:
        stage_names += [s for s in r.get("timings_s", {}) if s not in stage_names]
    per_clip_calls = [_calls(r) for r in results]
    stages: dict[str, dict[str, Any]] = {}
    for stage in stage_names:
        seconds = np.array([float(r.get("timings_s", {}).get(stage, 0.0)) for r in results])
        role = STAGE_ROLE.get(stage)
        row: dict[str, Any] = _seconds_summary(seconds, n_clips, n_frames)
        row["role"] = role
        for key in ("calls", "input_tokens", "output_tokens"):
            row[key] = sum(c[role][key] for c in per_clip_calls) if role else 0
        stages[stage] = row
    totals = np.array([sum(float(v) for v in r.get("timings_s", {}).values()) for r in results])
    total = _seconds_summary(totals, n_clips, n_frames)
    for key in ("calls", "input_tokens", "output_tokens"):
        total[key] = sum(row[key] for row in stages.values())
    load: dict[str, float] = {}
    for r in results:
        for role, seconds in r.get("model_load_s", {}).items():
            load[role] = max(load.get(role, 0.0), float(seconds))
    return {"n_clips": n_clips, "n_frames": n_frames, "stages": stages, "total": total, "model_load_s": load}


def _seconds_summary(seconds: np.ndarray, n_clips: int, n_frames: int) -> dict[str, float]:
    """Total, mean per clip and per frame, median and p95 per clip, in seconds (0 when nothing ran)."""
    if not n_clips:
        return {"seconds": 0.0, "per_clip_s": 0.0, "per_frame_s": 0.0, "p50_clip_s": 0.0, "p95_clip_s": 0.0}
    total = float(seconds.sum())
    return {
        "seconds": round(total, 3),
        "per_clip_s": round(total / n_clips, 4),
        "per_frame_s": round(total / n_frames, 4) if n_frames else 0.0,
        "p50_clip_s": round(float(np.percentile(seconds, 50)), 4),
        "p95_clip_s": round(float(np.percentile(seconds, 95)), 4),
    }
