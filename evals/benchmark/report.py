"""The benchmark's output files: metrics.json, per_video.csv, per_category.csv, errors.jsonl and report.md.

report.md puts the measured numbers beside the paper's rows for the same setting (evals.benchmark.paper), then
the per-category table, cost and latency per stage, failures and provenance. All files are written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evals.benchmark.paper import PaperRow
from evals.benchmark.progress import format_duration
from evals.datasets import EvalClip
from evals.datasets.csvio import write_table
from tools.runfiles import write_json_atomic, write_text_atomic

VIDEO_COLUMNS = (
    "name", "split", "category", "label", "classes", "status", "miou", "fscore", "fscore_binary",
    "semantic_miou", "semantic_fscore", "n_frames", "n_nonempty", "seconds", "input_tokens", "output_tokens",
    "phrases", "error",
)  # fmt: skip
CATEGORY_COLUMNS = (
    "class", "class_index", "n_videos", "miou", "fscore", "fscore_binary", "semantic_iou", "semantic_fscore",
)  # fmt: skip


def video_rows(
    clips: Sequence[EvalClip],
    binary_rows: Sequence[dict[str, Any]],
    semantic_rows: Sequence[dict[str, Any]] | None,
    results: Sequence[dict[str, Any] | None],
    errors: Sequence[str | None],
) -> list[dict[str, Any]]:
    """One row per video: its scores, what the pipeline did (status, seconds, tokens, phrases) and any error.

    `results[i]` is clip i's result.json (None when it failed or when scoring existing predictions); `errors[i]`
    its error line. Status: ok, failed, or "" for predictions that were only scored.
    """
    rows = []
    for i, (clip, brow) in enumerate(zip(clips, binary_rows, strict=True)):
        result, error = results[i], errors[i]
        row: dict[str, Any] = {
            "name": clip.name,
            "split": clip.split,
            "category": clip.category or "",
            "label": clip.label or "",
            "classes": ";".join(clip.raw_classes),
            "status": "failed" if error else ("ok" if result is not None else ""),
            **{k: brow[k] for k in ("miou", "fscore", "fscore_binary", "n_frames", "n_nonempty")},
            "error": error or "",
        }
        if semantic_rows is not None:
            row["semantic_miou"] = semantic_rows[i]["miou"]
            row["semantic_fscore"] = semantic_rows[i]["fscore"]
        if result is not None:
            row["seconds"] = round(sum(float(v) for v in result.get("timings_s", {}).values()), 3)
            row["input_tokens"] = result.get("tokens", {}).get("input", 0)
            row["output_tokens"] = result.get("tokens", {}).get("output", 0)
            phrases = [p for frame in result.get("frames", []) for p in frame.get("phrases", [])]
            row["phrases"] = ";".join(dict.fromkeys(phrases))
        rows.append(row)
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Markdown table lines; floats with 4 decimals, None as "-"."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def _scores_section(metrics: dict[str, Any], paper: Sequence[PaperRow]) -> list[str]:
    subset = metrics["subset"]
    lines = ["## Scores", ""]
    rows: list[list[Any]] = [["**this run**", metrics["miou"], metrics["fscore"], metrics["fscore_binary"]]]
    for row in paper:
        name = f"paper: {row.method}" + (" ← same setting" if row.matches else "")
        rows.append([name, row.miou, row.fscore, None])
    lines += _table(["", "mIoU (M_J)", "F-score (official, M_F)", "F of the hard mask"], rows)
    lines.append("")
    if subset == "avss":
        lines += _table(
            ["AVSS semantic (71 classes)", "mIoU", "F-score"],
            [
                [f"padded to {metrics['semantic_pad_to']} frames (official)", metrics["semantic_miou"],
                 metrics["semantic_fscore"]],
                ["unpadded", metrics["semantic_miou_unpadded"], metrics["semantic_fscore_unpadded"]],
            ],
        )  # fmt: skip
        lines += ["", "The paper reports no AVSS numbers; the binary row above is foreground vs background (as V3)."]
    elif not any(row.matches for row in paper):
        lines.append("No paper row has this setting; all published rows for the subset are listed.")
    lines += [
        "",
        f"F-score: official protocol, 255 thresholds on sigmoid(0/1 logits), batch size {metrics['fscore_batch_size']}"
        " video(s); the last column is the plain F (beta² 0.3) of the hard mask.",
    ]
    return [*lines, ""]


def _notes(metrics: dict[str, Any]) -> list[str]:
    lines = ["## Notes", ""]
    if metrics.get("meaningful") is False:
        lines.append("- **Some models have random or tiny weights: the numbers measure the plumbing, not OpenAVS.**")
    if metrics.get("n_failed"):
        lines.append(
            f"- {metrics['n_failed']} of {metrics['n_videos']} clips failed; each is scored as an empty "
            "(all-background) prediction and listed below and in errors.jsonl."
        )
    mapping = metrics.get("phrase_mapping")
    if mapping:
        unmapped = ", ".join(f"{p} ({n})" for p, n in mapping["unmapped"].items()) or "none"
        lines.append(
            f"- AVSS: {mapping['n_unmapped_objects']} of {mapping['n_objects']} object masks had a phrase that "
            f"names no AVSS class and were left as background: {unmapped}."
        )
    if metrics.get("n_without_classes"):
        lines.append(
            f"- {metrics['n_without_classes']} clips have no class names in the metadata: oracle prompts are empty "
            "there, so their prediction is empty."
        )
    return [*lines, ""] if len(lines) > 2 else []


def _category_section(categories: Sequence[dict[str, Any]], semantic: bool) -> list[str]:
    title = "AVSS class" if semantic else "Category / class"
    header = [title, "videos", "mIoU", "F-score", "F hard"]
    keys = ["class", "n_videos", "miou", "fscore", "fscore_binary"]
    if semantic:
        header += ["semantic IoU (official)", "semantic F (official)"]
        keys += ["semantic_iou", "semantic_fscore"]
    lines = ["## Per category", "", "Mean per-video scores of the videos whose metadata names the class."]
    if semantic:
        lines[-1] += " Semantic columns: the official per-class IoU / F (padded)."
    return [*lines, "", *_table(header, [[c.get(k) for k in keys] for c in categories]), ""]


def _cost_section(costs: dict[str, Any], run: dict[str, Any]) -> list[str]:
    rows = [
        [stage, row["role"] or "-", row["seconds"], row["per_clip_s"], row["per_frame_s"], row["p50_clip_s"],
         row["p95_clip_s"], row["calls"], row["input_tokens"], row["output_tokens"]]
        for stage, row in [*costs["stages"].items(), ("**total**", {**costs["total"], "role": None})]
    ]  # fmt: skip
    header = ["stage", "model", "total s", "s/clip", "s/frame", "p50 s/clip", "p95 s/clip", "model calls",
              "input tokens", "output tokens"]  # fmt: skip
    load = ", ".join(f"{role} {s:.2f} s" for role, s in costs["model_load_s"].items()) or "preloaded"
    lines = [
        "## Cost and latency per stage",
        "",
        f"Summed over the {costs['n_clips']} finished clips' result.json ({costs['n_frames']} frames). "
        "Cache hits cost no calls and no tokens; grounder calls are batched detect calls, segmenter calls one "
        "per frame with boxes.",
        "",
        *_table(header, rows),
        "",
        f"Model loading (once per process): {load}.",
    ]
    if run:
        lines.append(
            f"This invocation: {run['ran']} clips run ({run['failed']} failed), {run['skipped']} already finished, "
            f"wall time {format_duration(run['wall_s'])} with {run['workers']} worker(s)."
        )
    return [*lines, ""]


def _failures_section(failures: Sequence[dict[str, Any]], limit: int = 20) -> list[str]:
    if not failures:
        return []
    lines = ["## Failed clips", ""]
    lines += [f"- `{f['clip']}`: {f['error']}" for f in failures[:limit]]
    if len(failures) > limit:
        lines.append(f"- ... {len(failures) - limit} more in errors.jsonl")
    return [*lines, ""]


def _provenance_section(prov: dict[str, Any]) -> list[str]:
    git = prov["git"]
    dirty = " (dirty working tree)" if git.get("dirty") else ""
    versions = ", ".join(f"{k} {v}" for k, v in prov["versions"].items())
    models = [f"{m.get('role')}: {m.get('model_id')} ({m.get('face')}, revision {m.get('revision') or '-'}, "
              f"commit {m.get('commit') or '-'})" for m in prov["models"]]  # fmt: skip
    lines = [
        "## Provenance",
        "",
        f"- code: git {git.get('commit') or 'unknown'}{dirty}; uv.lock sha256 {prov['uv_lock_sha256']}",
        f"- device: {prov['device']}; {versions}",
        *[f"- {m}" for m in models],
        "- settings: see metrics.json `provenance.settings`",
    ]
    return [*lines, ""]


def render_markdown(metrics: dict[str, Any], paper: Sequence[PaperRow], categories: Sequence[dict[str, Any]]) -> str:
    """report.md text."""
    title = f"# AVSBench {metrics['subset'].upper()} ({metrics['split']}): {metrics['n_videos']} videos"
    setting = (
        f"profile `{metrics.get('profile') or '-'}`, prompts `{metrics.get('prompts') or '-'}`"
        if "prompts" in metrics
        else f"scored existing predictions in `{metrics.get('predictions')}`"
    )
    lines = [title, "", f"Setting: {setting}.", ""]
    lines += _scores_section(metrics, paper)
    lines += _notes(metrics)
    lines += _category_section(categories, metrics["subset"] == "avss")
    if "costs" in metrics:
        lines += _cost_section(metrics["costs"], metrics.get("run", {}))
    lines += _failures_section(metrics.get("failed", []))
    lines += _provenance_section(metrics["provenance"])
    return "\n".join(lines)


def write_outputs(
    out: Path,
    metrics: dict[str, Any],
    videos: Sequence[dict[str, Any]],
    categories: Sequence[dict[str, Any]],
    paper: Sequence[PaperRow],
) -> None:
    """metrics.json, per_video.csv, per_category.csv, errors.jsonl (failures only) and report.md under `out`.

    The semantic and class-index columns appear for AVSS only.
    """
    semantic = metrics["subset"] == "avss"
    video_cols = [c for c in VIDEO_COLUMNS if semantic or not c.startswith("semantic_")]
    category_cols = [c for c in CATEGORY_COLUMNS if semantic or not c.startswith(("semantic_", "class_index"))]
    write_json_atomic(out / "metrics.json", metrics)
    write_table(out / "per_video.csv", video_cols, [[_csv(v.get(c)) for c in video_cols] for v in videos])
    write_table(out / "per_category.csv", category_cols, [[_csv(c.get(k)) for k in category_cols] for c in categories])
    write_errors(out, metrics.get("failed", []))
    write_text_atomic(out / "report.md", render_markdown(metrics, paper, categories))


def write_errors(out: Path, failures: Sequence[dict[str, Any]]) -> None:
    """errors.jsonl: one JSON object per failed clip ({clip, name, error}); empty when none failed."""
    write_text_atomic(out / "errors.jsonl", "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures))


def _csv(value: Any) -> Any:
    if value is None:
        return ""
    return f"{value:.6f}" if isinstance(value, float) else value
