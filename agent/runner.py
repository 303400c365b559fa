"""One run of a graph over one clip: the run folder, the trace, the SQLite checkpointer, and resuming.

run.json (written first) holds what is needed to resume: the settings, the source and the graph name; result.json
(written last, by the graph's emit node) marks a complete run.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

from langgraph.checkpoint.sqlite import SqliteSaver

from graphs.context import PipelineSettings, RunContext
from graphs.pipeline import FramesSource, VideoSource, build_pipeline
from tools.cache import DiskCache
from tools.errors import InputError
from tools.models.registry import ModelRegistry, ensure_weights_available
from tools.runfiles import read_json, write_json_atomic
from tools.tracing import TraceWriter
from tools.translate import LexiconTranslator, LLMTranslator, Translator, build_chat_model

THREAD_ID = "run"
RECURSION_LIMIT = 25
Progress = Callable[[str, str], None]


def new_run_dir(out: str | Path | None, stem: str) -> Path:
    """The run folder: `out` if given (it must not hold a run yet), else runs/<stem>-<date-time>."""
    run_dir = Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}" if out is None else Path(out)
    if (run_dir / "run.json").exists():
        raise InputError(f"{run_dir} already holds a run: resume it with --resume {run_dir} or choose another --out")
    if run_dir.exists() and not run_dir.is_dir():
        raise InputError(f"--out {run_dir} is a file, not a folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def build_translator(settings: PipelineSettings) -> Translator:
    """The translator the settings name: an OpenAI-compatible chat model, or the built-in lexicon."""
    if settings.translator == "llm":
        llm = settings.llm
        chat_model = build_chat_model(
            llm.model,
            base_url=llm.base_url,
            api_key=None,
            timeout_s=llm.timeout_s,
            max_retries=llm.max_retries,
            temperature=llm.temperature,
        )
        return LLMTranslator(chat_model, variant=settings.translate_variant)
    return LexiconTranslator(min_tag_score=settings.lexicon_min_tag_score)


def preflight(settings: PipelineSettings) -> None:
    """Fail in seconds, before any decoding, when a real model's weights cannot be had."""
    for spec in settings.model_specs():
        ensure_weights_available(spec)


def run_graph(
    run_dir: Path,
    settings: PipelineSettings,
    source: VideoSource | FramesSource,
    *,
    registry: ModelRegistry | None = None,
    translator: Translator | None = None,
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the pipeline graph in `run_dir` and return its final state."""
    if not resume:
        write_json_atomic(
            run_dir / "run.json",
            {"graph": "pipeline", "settings": settings.model_dump(mode="json"), "source": dict(source)},
        )
    preflight(settings)
    tracer = TraceWriter(run_dir / "trace.jsonl")
    registry = registry or ModelRegistry(settings.device)
    context = RunContext(
        settings=settings,
        registry=registry,
        translator=translator or (build_translator(settings) if settings.oracle_phrases is None else None),
        run_dir=run_dir,
        tracer=tracer,
        cache=cache,
        **({"progress": progress} if progress else {}),
    )
    tracer.emit(
        "run_start",
        "pipeline",
        resume=resume,
        source=dict(source),
        profile=settings.profile,
        device=registry.device,
        meaningful=settings.meaningful,
    )
    for spec in settings.model_specs():
        with tracer.span("model_load", spec.role, model=spec.model_id, face=spec.face, device=registry.device):
            registry.get(spec)
    context.progress("models", f"ready on {registry.device}: {_model_line(registry)}")
    start = time.perf_counter()
    config = {"configurable": {"thread_id": THREAD_ID}, "recursion_limit": RECURSION_LIMIT}
    with closing(sqlite3.connect(run_dir / "checkpoints.sqlite", check_same_thread=False)) as conn:
        graph = build_pipeline().compile(checkpointer=SqliteSaver(conn))
        saved = graph.get_state(config)
        # Resuming a run that stopped before its first checkpoint starts it over; a finished one is returned as is.
        graph_input = None if resume and saved.values else {"source": source}
        if resume and saved.values and not saved.next:
            tracer.emit("run_end", "pipeline", 0.0, status="ok", note="already complete")
            return saved.values
        try:
            state = graph.invoke(graph_input, config, context=context)
        except BaseException as err:
            tracer.emit("error", "pipeline", error=f"{type(err).__name__}: {err}".splitlines()[0])
            tracer.emit("run_end", "pipeline", (time.perf_counter() - start) * 1000, status="failed")
            raise
    tracer.emit("run_end", "pipeline", (time.perf_counter() - start) * 1000, status="ok")
    return state


def _model_line(registry: ModelRegistry) -> str:
    return ", ".join(f"{role} {seconds:.1f} s" for role, seconds in registry.load_seconds.items()) or "preloaded"


def load_run(run_dir: Path) -> tuple[PipelineSettings, VideoSource | FramesSource]:
    """Settings and source of an earlier run, for --resume."""
    if not (run_dir / "run.json").is_file():
        raise InputError(f"--resume {run_dir}: no run.json there, so it is not a run folder")
    if not (run_dir / "checkpoints.sqlite").is_file():
        raise InputError(f"--resume {run_dir}: no checkpoints.sqlite there, so there is nothing to resume")
    saved = read_json(run_dir / "run.json")
    return PipelineSettings.model_validate(saved["settings"]), saved["source"]
