"""The graphs registered in langgraph.json load by their paths and run with the JSON context a server passes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from tests.clipfactory import write_test_clip
from tools.runfiles import read_mask_png

REPO = Path(__file__).resolve().parents[1]


def _load_graph(name: str):
    """Import a graph the way langgraph.json names it: ./path/to/file.py:attribute."""
    path, attribute = json.loads((REPO / "langgraph.json").read_text())["graphs"][name].split(":")
    spec = importlib.util.spec_from_file_location(f"studio_{name}", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


@pytest.mark.parametrize("name", ["pipeline", "agent"])
def test_registered_graphs_run_from_json_context(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAVS_STUDIO_RUNS", str(tmp_path / "runs"))
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=2.0, size=(64, 48))
    graph = _load_graph(name).copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": f"t-{name}"}, "recursion_limit": 100}
    state = graph.invoke(
        {"source": {"kind": "video", "path": str(clip)}},
        config,
        context={"profile": "tiny", "device": "cpu", "max_rounds": 1},
    )
    run_dir = tmp_path / "runs" / f"t-{name}"
    assert (run_dir / "result.json").is_file() and (run_dir / "trace.jsonl").is_file()
    assert read_mask_png(run_dir / "masks" / "clip_1.png").shape == (48, 64)
    assert len(state["frames"]) == 2
    assert graph.get_state(config).next == ()


def test_registered_chat_answers_turns_from_json_context(tmp_path: Path, monkeypatch) -> None:
    """The chat graph as a server runs it: each invocation is one user turn on the thread; the first segments the
    clip and writes the run folder, the second is answered from the same conversation without decoding again."""
    monkeypatch.setenv("OPENAVS_STUDIO_RUNS", str(tmp_path / "runs"))
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=2.0, size=(64, 48))
    graph = _load_graph("chat").copy(update={"checkpointer": InMemorySaver()})
    config = {"configurable": {"thread_id": "t-chat", "graph_id": "chat"}, "recursion_limit": 100}
    context = {"profile": "tiny", "device": "cpu", "max_rounds": 1}
    source = {"kind": "video", "path": str(clip)}
    first = graph.invoke(
        {"source": source, "messages": [{"role": "user", "content": "segment the sounding objects"}]}, config,
        context=context,
    )  # fmt: skip
    assert first["messages"][-1].type == "ai" and first["messages"][-1].content.strip()
    run_dir = tmp_path / "runs" / "t-chat"
    assert read_mask_png(run_dir / "masks" / "clip_1.png").shape == (48, 64)
    frames = first["frames"]
    second = graph.invoke(
        {"source": source, "messages": [{"role": "user", "content": "what do you hear?"}]}, config, context=context
    )
    assert second["turn"] == 2 and second["frames"] == frames
    assert [m.type for m in second["messages"]].count("human") == 2 and second["messages"][-1].type == "ai"


def test_each_run_on_a_thread_gets_its_own_clock(tmp_path: Path, monkeypatch) -> None:
    """The server builds a thread's context once; a later run on the thread keeps its models, translator, planner
    and critic but starts its own wall-clock deadline, while the nodes of one run share one context."""
    from agent import studio

    monkeypatch.setenv("OPENAVS_STUDIO_RUNS", str(tmp_path / "runs"))
    run = {"run_id": "run-1"}
    monkeypatch.setattr(studio, "get_config", lambda: {"configurable": {"thread_id": "t", "graph_id": "agent", **run}})
    context = {"profile": "tiny", "device": "cpu"}
    first = studio.studio_context(context)
    assert studio.studio_context(context) is first
    run["run_id"] = "run-2"
    later = studio.studio_context(context)
    assert later is not first and later.started_at > first.started_at
    assert (later.registry, later.translator, later.critic, later.tracer) == (
        first.registry,
        first.translator,
        first.critic,
        first.tracer,
    )
    assert studio.studio_context(context) is later


def test_chat_threads_get_the_chat_planner(tmp_path: Path, monkeypatch) -> None:
    """The server's graph_id picks the planner: the chat's own (it answers in text) for the chat graph, the agent's
    for the agent graph."""
    from agent import studio

    monkeypatch.setenv("OPENAVS_STUDIO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(studio, "chat_planner", lambda planner, settings, registry: "chat planner")
    monkeypatch.setattr(studio, "build_planner", lambda settings, registry: "agent planner")
    for graph, planner in (("chat", "chat planner"), ("agent", "agent planner")):
        config = {"configurable": {"thread_id": f"t-{graph}", "graph_id": graph, "run_id": "r"}}
        monkeypatch.setattr(studio, "get_config", lambda config=config: config)
        assert studio.studio_context({"profile": "tiny", "device": "cpu"}).planner == planner
