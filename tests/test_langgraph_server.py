"""`langgraph dev`: the in-memory LangGraph API server (what LangGraph Studio talks to) loads this repo's
langgraph.json and runs the "agent" graph for a client of langgraph-sdk, with the JSON context Studio sends.

The server runs as a subprocess on a free loopback port, offline (no LangSmith tracing, no CLI analytics, no
browser, no reloader); it is always killed, with its whole process group. Every wait is bounded. It runs in a tmp
folder because `langgraph dev` writes its state to .langgraph_api/ in its working folder and resolves the graph
paths against that folder too: the test gives it the repo's langgraph.json with those paths made absolute.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clipfactory import write_test_clip

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0  # importing torch, transformers and both graphs takes 15-25 s on 2 busy cores
RUN_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config_for(workdir: Path) -> Path:
    """The repo's langgraph.json, written into `workdir` with its graph and dependency paths made absolute."""
    config = json.loads((REPO / "langgraph.json").read_text())
    config["graphs"] = {name: str(REPO / spec) for name, spec in config["graphs"].items()}
    config["dependencies"] = [str(REPO / dep) for dep in config.get("dependencies", [])]
    path = workdir / "langgraph.json"
    path.write_text(json.dumps(config))
    return path


def _log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group (the CLI starts the API server as a child), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def langgraph_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, run folders root) of a running `langgraph dev` for this repo's langgraph.json."""
    port = free_port()
    runs = tmp_path / "runs"
    workdir = tmp_path / "server"
    workdir.mkdir()
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "LANGSMITH_TRACING": "false",
        "LANGCHAIN_TRACING_V2": "false",
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "OPENAVS_STUDIO_RUNS": str(runs),
    }
    env.pop("LANGSMITH_API_KEY", None)
    command = [sys.executable, "-m", "langgraph_cli", "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
               "--port", str(port), "--config", str(config_for(workdir))]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"langgraph dev exited with {proc.returncode}:\n{_log_tail(log)}")
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not answer in {START_TIMEOUT_S:.0f} s:\n{_log_tail(log)}")
            time.sleep(0.5)
        yield url, runs
    finally:
        _stop(proc)


def test_langgraph_dev_runs_the_agent_and_chat_graphs(langgraph_server: tuple[str, Path], tmp_path: Path) -> None:
    from langgraph_sdk import get_sync_client

    url, runs = langgraph_server
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=2.0, size=(64, 48))
    client = get_sync_client(url=url, timeout=30)
    assert {a["graph_id"] for a in client.assistants.search()} == {"agent", "pipeline", "chat"}
    thread = client.threads.create()
    run = client.runs.create(
        thread["thread_id"],
        "agent",
        input={"source": {"kind": "video", "path": str(clip)}},
        context={"profile": "tiny", "device": "cpu", "max_rounds": 1},
    )
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while (status := client.runs.get(thread["thread_id"], run["run_id"])["status"]) in ("pending", "running"):
        assert time.monotonic() < deadline, f"the run was still {status} after {RUN_TIMEOUT_S:.0f} s"
        time.sleep(0.5)
    assert status == "success"
    state = client.threads.get_state(thread["thread_id"])
    assert len(state["values"]["frames"]) == 2 and state["next"] == []
    run_dir = runs / thread["thread_id"]
    assert (run_dir / "result.json").is_file() and (run_dir / "trace.jsonl").is_file()
    assert sorted(p.name for p in (run_dir / "masks").glob("*.png")) == ["clip_1.png", "clip_2.png"]

    chat = client.threads.create()
    turn = client.runs.wait(
        chat["thread_id"],
        "chat",
        input={"source": {"kind": "video", "path": str(clip)}, "messages": [{"role": "user", "content": "segment"}]},
        context={"profile": "tiny", "device": "cpu", "max_rounds": 1},
    )
    assert turn["turn"] == 1 and turn["messages"][-1]["type"] == "ai" and turn["messages"][-1]["content"].strip()
    assert (runs / chat["thread_id"] / "masks" / "clip_1.png").is_file()
