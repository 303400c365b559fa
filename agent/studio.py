"""The graphs as LangGraph Studio and `langgraph dev` load them (registered in langgraph.json).

A LangGraph server passes only JSON, so these graphs take a small context ({"profile": "tiny", "device": "cpu",
"max_rounds": 2}; all optional, default profile "default") and build the RunContext here: models from one registry
per process, run folders under $OPENAVS_STUDIO_RUNS (default runs/studio)/<thread id>, the disk cache, and the
translator, planner and critic the profile names (for the chat, its chat planner). Input of pipeline and agent:
{"source": {"kind": "video", "path": "/path/clip.mp4"}}; of each chat turn, the same plus
"messages": [{"role": "user", "content": "..."}]. The server supplies its own checkpointer.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import Any

from langgraph.config import get_config

from agent.chat_session import chat_planner
from agent.profiles import agent_profile
from agent.runner import build_critic, build_planner, build_translator
from graphs.agent import build_agent
from graphs.chat import build_chat
from graphs.context import RunContext, StudioContext, set_context_factory
from graphs.pipeline import build_pipeline
from tools.cache import open_cache
from tools.models.registry import ModelRegistry
from tools.tracing import TraceWriter

_lock = threading.Lock()
_registries: dict[str | None, ModelRegistry] = {}
_contexts: dict[tuple[Any, ...], tuple[str, RunContext]] = {}
"""(graph, thread, profile, device, max_rounds) -> (the run it was last used by, its RunContext)."""


def studio_context(context: dict[str, Any]) -> RunContext:
    """The RunContext for one server thread, graph and JSON context, built once and reused by every node of every
    run on the thread; each new run gets its own clock (the wall-clock deadline counts from the run's start)."""
    configurable = get_config().get("configurable", {})
    graph = str(configurable.get("graph_id", "agent"))
    thread = str(configurable.get("thread_id", "default"))
    run = str(configurable.get("run_id", ""))
    key = (graph, thread, context.get("profile", "default"), context.get("device"), context.get("max_rounds"))
    with _lock:
        last_run, ctx = _contexts.get(key) or ("", None)
        if ctx is None:
            ctx = _build_context(graph, thread, context)
        elif run != last_run:
            ctx = dataclasses.replace(ctx, started_at=time.monotonic())
        _contexts[key] = (run, ctx)
        return ctx


def _build_context(graph: str, thread: str, context: dict[str, Any]) -> RunContext:
    updates = {"device": context.get("device")}
    if context.get("max_rounds"):
        updates["max_rounds"] = int(context["max_rounds"])
    settings = agent_profile(context.get("profile", "default")).model_copy(update=updates)
    registry = _registries.setdefault(settings.device, ModelRegistry(settings.device))
    run_dir = Path(os.environ.get("OPENAVS_STUDIO_RUNS", "runs/studio")) / thread
    run_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(
        settings=settings,
        registry=registry,
        translator=build_translator(settings),
        run_dir=run_dir,
        tracer=TraceWriter(run_dir / "trace.jsonl"),
        cache=open_cache(),
    )
    ctx.planner = chat_planner(None, settings, registry) if graph == "chat" else build_planner(settings, registry)
    ctx.critic = build_critic(settings, registry)
    return ctx


set_context_factory(studio_context)
pipeline = build_pipeline(StudioContext).compile()
agent = build_agent(StudioContext).compile()
chat = build_chat(StudioContext).compile()
