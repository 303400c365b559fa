"""One run of a graph over one clip: the run folder, the trace, the SQLite checkpointer, and resuming.

run.json (written first, agent.run_record) holds what is needed to resume: the settings, the source and the graph
name; result.json (written last, by the graph's emit node) marks a complete run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.sqlite import SqliteSaver

from agent.run_record import (
    CHECKPOINTS,
    RUN_RECORD,
    check_new_run_folder,
    checkpoint_connection,
    named_folder,
    saved_settings,
    write_run_record,
)
from graphs.agent import build_agent
from graphs.agent_tools import AGENT_TOOLS
from graphs.context import AgentSettings, LLMSettings, PipelineSettings, RunContext
from graphs.pipeline import FramesSource, VideoSource, build_pipeline
from graphs.planners import ChatPlanner
from tools.cache import DiskCache
from tools.critic import Critic, OpenAIVlmCritic
from tools.datamodel import FIRST_FRAME_NUMBER
from tools.errors import InputError
from tools.models.registry import ModelRegistry, ensure_weights_available
from tools.runfiles import require_folder_path
from tools.tracing import TraceWriter
from tools.translate import LexiconTranslator, LLMTranslator, Translator, build_chat_model

THREAD_ID = "run"
RECURSION_LIMIT = 25
Progress = Callable[[str, str], None]


def new_run_dir(out: str | Path | None, stem: str) -> Path:
    """The run folder for a new run: `out` if given (a new or empty folder), else runs/<stem>-<date-time>, with
    -2, -3, ... added when that name is taken (the same clip started twice within a second).
    Not created here: run_graph creates it once the run's models are known to be available."""
    if out is None:
        return _unused_default_folder(Path("runs") / f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    run_dir = named_folder(out)
    if (run_dir / RUN_RECORD).exists():
        raise InputError(f"{run_dir} already holds a run: resume it with --resume {run_dir} or choose another --out")
    check_new_run_folder(run_dir)
    return run_dir


def _unused_default_folder(base: Path) -> Path:
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    require_folder_path(run_dir, "the default run folder (give --out)")
    return run_dir


GRAPHS = {"pipeline": (build_pipeline, PipelineSettings), "agent": (build_agent, AgentSettings)}
GraphName = Literal["pipeline", "agent"]


def _chat_model(llm: LLMSettings) -> Any:
    return build_chat_model(
        llm.model,
        base_url=llm.base_url,
        api_key=None,
        timeout_s=llm.timeout_s,
        max_retries=llm.max_retries,
        temperature=llm.temperature,
    )


def build_translator(settings: PipelineSettings) -> Translator:
    """The translator the settings name: an OpenAI-compatible chat model, or the built-in lexicon."""
    if settings.translator == "llm":
        return LLMTranslator(_chat_model(settings.llm), variant=settings.translate_variant)
    return LexiconTranslator(min_tag_score=settings.lexicon_min_tag_score)


def _agent_planner(chat_model: Any, model_name: str) -> ChatPlanner:
    return ChatPlanner(chat_model, AGENT_TOOLS, model_name)


def build_planner(
    settings: AgentSettings,
    registry: ModelRegistry | None = None,
    make: Callable[[Any, str], Any] = _agent_planner,
) -> Any:
    """The LLM planner when the settings ask for one (None: the built-in policy plans): the local chat model
    settings.planner_model names, from `registry` (a new one if none is given), else the OpenAI-compatible llm.
    `make(chat_model, model_name)` wraps the model: the agent's ChatPlanner by default (the chat passes its own)."""
    if settings.planner != "llm":
        return None
    if settings.planner_model is not None:
        spec = settings.planner_model
        return make((registry or ModelRegistry(settings.device)).get(spec), spec.model_id)
    return make(_chat_model(settings.llm), settings.llm.model)


def build_critic(settings: AgentSettings, registry: ModelRegistry) -> Critic:
    """Deterministic checks, plus the VLM the settings name (a transformers model or an OpenAI-compatible one)."""
    vlm = None
    if settings.critic is not None:
        vlm = registry.get(settings.critic)
    elif settings.critic_llm is not None:
        vlm = OpenAIVlmCritic(_chat_model(settings.critic_llm), max_images=settings.critic_max_images)
    return Critic(vlm=vlm, max_images=settings.critic_max_images)


def preflight(settings: PipelineSettings) -> None:
    """Fail in seconds, before any decoding, when a real model's weights cannot be had."""
    for spec in settings.model_specs():
        ensure_weights_available(spec)


def run_graph(
    run_dir: Path,
    settings: PipelineSettings,
    source: VideoSource | FramesSource,
    *,
    graph: GraphName = "pipeline",
    registry: ModelRegistry | None = None,
    translator: Translator | None = None,
    planner: Any = None,
    critic: Critic | None = None,
    cache: DiskCache | None = None,
    progress: Progress | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the named graph in `run_dir` and return its final state.

    registry, translator, planner and critic default to what the settings name; tests pass fakes.
    """
    build, settings_class = GRAPHS[graph]
    settings = settings_class.model_validate(settings.model_dump(include=set(settings_class.model_fields)))
    # Before anything is written: a run that cannot start leaves no run folder claiming a run to resume.
    preflight(settings)
    if not resume:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputError(f"{run_dir}: the run folder cannot be created ({err.strerror or err})") from None
        write_run_record(run_dir, graph, settings, source)
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
    if graph == "agent":
        context.planner = planner or build_planner(settings, registry)
        context.critic = critic or build_critic(settings, registry)
    tracer.emit(
        "run_start",
        graph,
        resume=resume,
        source=dict(source),
        profile=settings.profile,
        device=registry.device,
        meaningful=settings.meaningful,
        frames_from=FIRST_FRAME_NUMBER,
    )
    preload_models(settings, registry, tracer, context.progress)
    start = time.perf_counter()
    limit = settings.recursion_limit if isinstance(settings, AgentSettings) else RECURSION_LIMIT
    config = {"configurable": {"thread_id": THREAD_ID}, "recursion_limit": limit}
    with closing(checkpoint_connection(run_dir / CHECKPOINTS)) as conn:
        compiled = build().compile(checkpointer=SqliteSaver(conn))
        # Resuming a run that stopped before its first checkpoint starts it over; a finished one is returned as is.
        saved = compiled.get_state(config) if resume else None  # a new run has nothing saved to read
        graph_input = None if saved and saved.values else {"source": source}
        if saved and saved.values and not saved.next and (run_dir / "result.json").is_file():
            tracer.emit("run_end", graph, 0.0, status="ok", note="already complete")
            return saved.values
        try:
            # "sync": each step's checkpoint is committed before the next step starts, so a killed run never
            # resumes past work that was not saved (the default writes checkpoints in the background).
            state = compiled.invoke(graph_input, config, context=context, durability="sync")
        except BaseException as err:
            tracer.emit("error", graph, error=f"{type(err).__name__}: {err}".splitlines()[0])
            tracer.emit("run_end", graph, (time.perf_counter() - start) * 1000, status="failed")
            raise
        finally:
            context.prefetch.close()  # a failed run leaves no decoding behind it, still writing into its folder
    final = state.get("final", {})
    tracer.emit(
        "run_end",
        graph,
        (time.perf_counter() - start) * 1000,
        status=final.get("status", "ok"),
        best_round=final.get("best_round"),
        flagged=final.get("flagged"),
    )
    return state


def preload_models(
    settings: PipelineSettings, registry: ModelRegistry, tracer: TraceWriter, progress: Progress
) -> None:
    """Load every model the settings name (once per registry), each traced as a model_load record."""
    for spec in settings.model_specs():
        with tracer.span("model_load", spec.role, model=spec.model_id, face=spec.face, device=registry.device):
            registry.get(spec)
    progress("models", f"ready on {registry.device}: {_model_line(registry)}")


def _model_line(registry: ModelRegistry) -> str:
    return ", ".join(f"{role} {seconds:.1f} s" for role, seconds in registry.load_seconds.items()) or "preloaded"


def resumed_run(
    record: dict[str, Any], run_dir: Path
) -> tuple[GraphName, PipelineSettings, VideoSource | FramesSource]:
    """Graph name, settings and source of an earlier run, from its run.json (agent.run_record.resumable_record)."""
    graph = record["graph"]
    return graph, saved_settings(record, GRAPHS[graph][1], f"--resume {run_dir}"), record["source"]
