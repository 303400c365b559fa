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
