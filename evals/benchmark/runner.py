"""run_benchmark: run the pipeline over an AVSBench subset (resumably, in parallel), score it, write the reports.

Output folder (OUT):
    benchmark.json        what this folder measures (subset, split, root, prompts, graph, settings); a rerun with
                          other settings into the same OUT is refused, a rerun with the same ones resumes
    clips/<key>/          one agent.runner run folder per clip (see evals.benchmark.clips for the states)
    predictions/          the tree evals.scoring reads, rebuilt from the clips' result.json at the end of each run
    metrics.json, per_video.csv, per_category.csv, errors.jsonl, report.md   (evals.benchmark.report)
A failed clip is recorded in clips/<key>/error.json and errors.jsonl, scored as an empty prediction and counted
in n_failed; the run goes on unless more than `max_errors` clips failed in this invocation (TooManyErrorsError).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.profiles import agent_profile, base_profile
from agent.runner import build_translator, preflight
from evals.benchmark.clips import (
    ClipOutcome,
    ClipRunner,
    clip_key,
    clip_run_dir,
    clip_state,
    oracle_phrases,
    read_result,
)
from evals.benchmark.costs import aggregate_costs
from evals.benchmark.export import export_empty, export_result
from evals.benchmark.options import BenchmarkOptions
from evals.benchmark.paper import paper_rows
from evals.benchmark.phrases import phrase_class_table
from evals.benchmark.progress import ProgressLine
from evals.benchmark.provenance import provenance
from evals.benchmark.report import video_rows, write_errors, write_outputs
from evals.benchmark.score import BenchmarkScores, per_category, score_tree
from evals.benchmark.serialize import serialize_models
from evals.datasets import EvalClip
from evals.datasets.palette import AVSS_NUM_CLASSES
from graphs.context import PipelineSettings
from tools.cache import open_cache
from tools.errors import InputError, OpenAVSError
from tools.models.registry import ModelRegistry
from tools.runfiles import read_input_json, read_json, require_folder_path, write_json_atomic
from tools.translate import Translator

FAILED_CLIP_POLICY = "scored as an empty (all-background) prediction and counted in n_failed"


class TooManyErrorsError(OpenAVSError):
    """More clips failed than --max-errors allows; the run stopped (finished clips are kept). Exit code 1."""

    exit_code = 1


def resolve_settings(options: BenchmarkOptions) -> PipelineSettings:
    """The run's shared settings: the given ones or the profile's, without overlay video; in oracle mode
    oracle_phrases = () marks that each clip gets its own class names (and that no audio model is loaded)."""
    default = agent_profile if options.graph == "agent" else base_profile
    settings = options.settings or default(options.profile)
    update: dict[str, Any] = {"write_overlay": False}
    if options.prompts == "oracle":
        update["oracle_phrases"] = ()
    elif settings.oracle_phrases is not None:
        raise InputError("the settings fix oracle phrases: use --prompts oracle for the class-name prompts")
    return type(settings).model_validate(settings.model_copy(update=update).model_dump())


def _fingerprint(options: BenchmarkOptions, settings: PipelineSettings) -> dict[str, Any]:
    return {
        "subset": options.subset,
        "split": options.split,
        "root": str(Path(options.root).expanduser().resolve()),
        "prompts": options.prompts,
        "graph": options.graph,
        "settings": settings.model_dump(mode="json"),
    }


def claim_out(out: Path, fingerprint: dict[str, Any]) -> None:
    """Make `out` this benchmark's folder, or check that it already is (same fingerprint). A folder whose run
    never started a clip (e.g. its models were missing) is simply claimed again."""
    marker = out / "benchmark.json"
    started = (out / "clips").is_dir() and any((out / "clips").iterdir())
    if marker.is_file() and started:
        saved = read_input_json(marker)
        differs = sorted(k for k in fingerprint if saved.get(k) != fingerprint[k])
        if "settings" in differs:
            old = saved.get("settings") or {}
            differs.remove("settings")
            new = fingerprint["settings"]
            differs += [f"settings.{k}" for k in sorted(new) if old.get(k) != new[k]]
        if differs:
            raise InputError(
                f"--out {out} holds a benchmark run with other {', '.join(differs)}: choose another --out "
                "(or rerun with the same options to resume it)"
            )
        return
    require_folder_path(out, "--out")
    if not marker.is_file() and out.is_dir() and any(out.iterdir()):  # predictions/ is rebuilt as a whole
        raise InputError(f"--out {out} already holds other files: give a new or empty folder, or a benchmark's")
    write_json_atomic(marker, fingerprint)


def iterate_clips(runner: ClipRunner, clips: Iterable[EvalClip], workers: int) -> Iterator[ClipOutcome]:
    """Outcomes as clips finish. workers > 1: at most `workers` clips in flight, so a consumer that stops early
    (too many errors) leaves nothing queued; closing the generator waits for the clips in flight."""
    if workers == 1:
        yield from map(runner, clips)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clip") as pool:
        running: set[Future[ClipOutcome]] = set()
        for clip in clips:
            running.add(pool.submit(runner, clip))
            if len(running) < workers:
                continue
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in finished)
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            yield from (f.result() for f in finished)


def _score(
    options: BenchmarkOptions, clips: list[EvalClip], pred_dir: Path, class_names: list[str] | None
) -> BenchmarkScores:
    return score_tree(
        clips,
        pred_dir,
        fscore_batch_size=options.fscore_batch_size,
        pad_to=options.pad_to,
        num_classes=len(class_names) if class_names else AVSS_NUM_CLASSES,
    )


def run_benchmark(
    options: BenchmarkOptions,
    *,
    registry: ModelRegistry | None = None,
    translator: Translator | None = None,
    dataset: tuple[list[EvalClip], list[str] | None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the benchmark, or only score `options.predictions`; returns the metrics.json document.

    `registry` / `translator` replace the ones built from the settings (tests install fakes); `dataset` is
    `options.dataset()` where the caller has already loaded it. Raises InputError for unusable options or data,
    TooManyErrorsError when more than `max_errors` clips fail.
    """
    options.validate()
    clips, class_names = dataset if dataset is not None else options.dataset()
    if options.predictions is not None:
        return _score_only(options, clips, class_names)
    return _run_and_score(options, clips, class_names, registry, translator)


def _score_only(options: BenchmarkOptions, clips: list[EvalClip], class_names: list[str] | None) -> dict[str, Any]:
    pred_dir = Path(options.predictions).expanduser()
    scores = _score(options, clips, pred_dir, class_names)
    metrics = {
        "subset": options.subset,
        "split": options.split,
        **scores.summary(),
        "predictions": str(pred_dir),
        "aggregate": scores.binary.aggregate,
        **({"semantic": scores.semantic.aggregate} if scores.semantic else {}),
    }
    n = len(clips)
    videos = video_rows(clips, scores.binary.rows, _semantic_rows(scores), [None] * n, [None] * n)
    categories = per_category(clips, scores, class_names)
    metrics["per_category"] = categories
    metrics["provenance"] = provenance([], settings=None, device=None, fscore_batch_size=options.fscore_batch_size)
    if options.out is not None:
        Path(options.out).mkdir(parents=True, exist_ok=True)
        write_outputs(Path(options.out), metrics, videos, categories, paper_rows(options.subset, None, None))
        metrics["out"] = str(options.out)
    return metrics


def _semantic_rows(scores: BenchmarkScores) -> list[dict[str, Any]] | None:
    return scores.semantic.rows if scores.semantic is not None else None


@dataclass
class RunSummary:
    """What this invocation did: clips run and skipped, wall time, failures, and whether it stopped early."""

    ran: int = 0
    skipped: int = 0
    failed: int = 0
    wall_s: float = 0.0
    workers: int = 1
    stopped: bool = False
    device: str | None = None


def run_pending(
    options: BenchmarkOptions,
    settings: PipelineSettings,
    clips_dir: Path,
    clips: list[EvalClip],
    registry: ModelRegistry | None,
    translator: Translator | None,
) -> RunSummary:
    """Run every clip that is not done yet, with the progress line; stop once more than max_errors fail."""
    pending = [c for c in clips if clip_state(clip_run_dir(clips_dir, c), c) != "done"]
    summary = RunSummary(skipped=len(clips) - len(pending), workers=options.workers)
    progress = ProgressLine(f"avsbench {options.subset}/{options.split}", len(clips), enabled=options.show_progress)
    progress.counts["skipped"] = summary.skipped
    progress.draw()
    start = time.perf_counter()
    if pending:  # a rerun of a finished benchmark only rescores: no model is loaded
        registry, translator = _prepare_models(options, settings, registry, translator)
        summary.device = registry.device
        cache = open_cache(options.cache_dir) if options.cache else None
        runner = ClipRunner(
            clips_dir, settings, options.prompts == "oracle", registry, translator, cache, graph=options.graph
        )
        for outcome in iterate_clips(runner, pending, options.workers):
            progress.update(outcome.status)
            summary.ran += 1
            summary.failed += outcome.status == "failed"
            if options.max_errors is not None and summary.failed > options.max_errors:
                summary.stopped = True
                break
    progress.close()
    summary.wall_s = round(time.perf_counter() - start, 3)
    return summary


def export_predictions(
    clips: list[EvalClip],
    clips_dir: Path,
    results: list[dict | None],
    pred_dir: Path,
    class_names: list[str] | None,
) -> dict[str, Any] | None:
    """Rebuild the prediction tree from every clip's result.json (a failed clip: empty masks); for AVSS return
    the phrase-mapping record of metrics.json, else None."""
    table = phrase_class_table(class_names) if class_names else None
    unmapped: Counter[str] = Counter()
    for clip, result in zip(clips, results, strict=True):
        if result is None:
            export_empty(clip, pred_dir)
        else:
            export_result(clip, clip_run_dir(clips_dir, clip), result, pred_dir, table, unmapped)
    if table is None:
        return None
    return {
        "policy": "a phrase naming no AVSS class is left as background (evals.benchmark.phrases)",
        "n_objects": sum(len(f.get("objects", [])) for r in results if r is not None for f in r["frames"]),
        "n_unmapped_objects": sum(unmapped.values()),
        "unmapped": dict(unmapped.most_common()),
    }


def _run_and_score(
    options: BenchmarkOptions,
    clips: list[EvalClip],
    class_names: list[str] | None,
    registry: ModelRegistry | None,
    translator: Translator | None,
) -> dict[str, Any]:
    settings = resolve_settings(options)
    out = Path(options.out) if options.out is not None else options.default_out(settings.profile)
    claim_out(out, _fingerprint(options, settings))
    clips_dir = out / "clips"
    run = run_pending(options, settings, clips_dir, clips, registry, translator)
    results, errors = _collect(clips_dir, clips)
    if run.stopped:
        write_errors(out, _failures(clips, errors))
        raise TooManyErrorsError(
            f"{run.failed} clip(s) failed in this run, more than --max-errors {options.max_errors}: stopped "
            f"(errors in {out / 'errors.jsonl'}; rerun to resume)"
        )
    # Every clip was attempted: one with neither result nor error.json can only come from a foreign hand.
    unfinished = "no result: the clip did not finish"
    errors = [e or (unfinished if r is None else None) for r, e in zip(results, errors, strict=True)]
    failures = _failures(clips, errors)
    mapping = export_predictions(clips, clips_dir, results, out / "predictions", class_names)
    scores = _score(options, clips, out / "predictions", class_names)
    finished = [r for r in results if r is not None]
    categories = per_category(clips, scores, class_names)
    paper = paper_rows(options.subset, options.prompts, settings.segmenter.family)
    metrics: dict[str, Any] = {
        "subset": options.subset,
        "split": options.split,
        "profile": settings.profile,
        "prompts": options.prompts,
        "graph": options.graph,
        **scores.summary(),
        "n_clips": len(clips),
        "n_failed": len(failures),
        "meaningful": settings.meaningful,
        "failed_clip_policy": FAILED_CLIP_POLICY,
        "aggregate": scores.binary.aggregate,
        **({"semantic": scores.semantic.aggregate} if scores.semantic else {}),
        **({"phrase_mapping": mapping} if mapping else {}),
        **({"n_without_classes": _without_classes(clips)} if options.prompts == "oracle" else {}),
        "per_category": categories,
        "costs": aggregate_costs(finished),
        "run": {**asdict(run), "finished_at": datetime.now(UTC).isoformat(timespec="seconds")},
        "failed": failures,
        "provenance": provenance(
            finished,
            settings=settings.model_dump(mode="json"),
            device=run.device,
            fscore_batch_size=options.fscore_batch_size,
        ),
        "options": _options_record(options),
        "paper": [asdict(row) for row in paper],
    }
    videos = video_rows(clips, scores.binary.rows, _semantic_rows(scores), results, errors)
    write_outputs(out, metrics, videos, categories, paper)
    metrics["out"] = str(out)
    return metrics


def _without_classes(clips: list[EvalClip]) -> int:
    """Clips whose metadata names no class: their oracle prompt is empty, so their prediction is empty."""
    return sum(1 for c in clips if not oracle_phrases(c))


def _prepare_models(
    options: BenchmarkOptions,
    settings: PipelineSettings,
    registry: ModelRegistry | None,
    translator: Translator | None,
) -> tuple[ModelRegistry, Translator | None]:
    """The shared registry with every model loaded (in this thread, before any clip: a model problem stops the
    run here instead of failing every clip), serialized per model for workers > 1; and the shared translator."""
    preflight(settings)
    registry = registry or ModelRegistry(settings.device)
    for spec in settings.model_specs():
        registry.get(spec)
    if options.workers > 1:
        serialize_models(registry, settings)
    if translator is None and options.prompts != "oracle":
        translator = build_translator(settings)
    return registry, translator


def _collect(clips_dir: Path, clips: list[EvalClip]) -> tuple[list[dict | None], list[str | None]]:
    """Each clip's result.json (None if unfinished) and error.json line (None unless it failed), from disk."""
    results: list[dict | None] = []
    errors: list[str | None] = []
    for clip in clips:
        run_dir = clip_run_dir(clips_dir, clip)
        result = read_result(run_dir, clip)
        results.append(result)
        error = None
        if result is None and (run_dir / "error.json").is_file():
            try:
                error = str(read_json(run_dir / "error.json").get("error"))
            except (OSError, ValueError, AttributeError):
                error = "unreadable error.json"
        errors.append(error)
    return results, errors


def _failures(clips: list[EvalClip], errors: list[str | None]) -> list[dict[str, str]]:
    """errors.jsonl records: {clip (its folder under clips/), name, error}."""
    return [{"clip": str(clip_key(c)), "name": c.name, "error": e} for c, e in zip(clips, errors, strict=True) if e]


def _options_record(options: BenchmarkOptions) -> dict[str, Any]:
    """The options as plain JSON (settings are recorded in provenance)."""
    record = {k: v for k, v in options.__dict__.items() if k != "settings"}
    return {k: str(v) if isinstance(v, Path) else v for k, v in record.items()}
