"""The agent's planner through the REAL openai client (ChatOpenAI) against a loopback OpenAI-compatible server:
tool calls round-trip, and every fault ends in bounded retries and a recorded error, never a hang or a crash."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from graphs.agent import REPEATED_FAILURES, RepeatedToolFailure, repeated_failure
from graphs.agent_tools import AGENT_TOOLS, TOOL_NAMES
from graphs.planners import ChatPlanner
from tests.agent_rig import Rig
from tests.openai_stub import Reply, openai_stub
from tools.translate import build_chat_model

GOOD_RUN = [
    Reply(tool_calls=[{"name": "describe_audio", "arguments": {}}]),
    Reply(tool_calls=[{"name": "ground", "arguments": {"all_frames": ["man", "piano"], "box_threshold": 0.2}}]),
    Reply(tool_calls=[{"name": "segment", "arguments": {}}]),
    Reply(tool_calls=[{"name": "critique", "arguments": {}}]),
    Reply(tool_calls=[{"name": "finalize", "arguments": {"reason": "critique ok"}}]),
]


def _planner(base_url: str, timeout_s: float = 5.0, max_retries: int = 2) -> ChatPlanner:
    model = build_chat_model(
        "stub-model", base_url=base_url, api_key="test", timeout_s=timeout_s, max_retries=max_retries
    )
    return ChatPlanner(model, AGENT_TOOLS, "stub-model")


def _run(rig: Rig, planner: ChatPlanner) -> tuple[dict, float]:
    start = time.perf_counter()
    state = rig.run(llm_planner=planner, planner="llm")
    return state, time.perf_counter() - start


def _errors(rig: Rig) -> list[dict]:
    return [r for r in rig.trace() if r["kind"] == "error"]


def test_tool_calls_round_trip_through_the_openai_client(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    with openai_stub(*GOOD_RUN) as stub:
        state, _ = _run(rig, _planner(stub.base_url))
    assert rig.tool_sequence() == ["describe_audio", "ground", "segment", "critique"]
    assert state["final"]["best_round"] == 0 and state["final"]["reason"] == "critique ok"
    first, last = stub.requests[0], stub.requests[-1]
    assert {t["function"]["name"] for t in first["tools"]} == set(TOOL_NAMES)
    assert first["parallel_tool_calls"] is False and first["messages"][0]["role"] == "system"
    tool_messages = [m for m in last["messages"] if m["role"] == "tool"]
    assert len(tool_messages) == 4 and tool_messages[0]["content"].startswith("<data>")
    assert json.loads(tool_messages[-1]["content"].split("\n")[1])["verdict"]["ok"] is True
    planner_calls = [r for r in rig.trace() if r["kind"] == "llm_call" and r["name"] == "planner"]
    assert len(planner_calls) == 5 and all(r["input_tokens"] > 0 for r in planner_calls)
    assert not _errors(rig)


def test_http_500_and_429_are_retried_by_the_client_once_each(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    faults = [Reply(status=500), GOOD_RUN[0], Reply(status=429, headers={"retry-after-ms": "50"}), *GOOD_RUN[1:]]
    with openai_stub(*faults) as stub:
        state, seconds = _run(rig, _planner(stub.base_url))
    assert len(stub.requests) == len(GOOD_RUN) + 2
    assert state["final"]["best_round"] == 0 and state["planner"] == "llm"
    assert seconds < 30


def test_timeouts_end_in_the_builtin_planner_not_a_hang(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    with openai_stub(default=Reply(content="too late", delay_s=5.0)) as stub:
        state, seconds = _run(rig, _planner(stub.base_url, timeout_s=0.3, max_retries=1))
    assert len(stub.requests) == 2  # one try and one retry, then the built-in planner takes over
    assert state["planner"] == "builtin" and state["final"]["best_round"] == 1
    [error] = [e for e in _errors(rig) if e["name"] == "planner"]
    assert "TimeoutError" in error["error"] and seconds < 30


def test_malformed_unknown_and_invalid_tool_calls_come_back_as_errors(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    faults = [
        Reply(tool_calls=[{"name": "ground", "arguments": '{"all_frames": ["man"'}]),  # malformed JSON
        Reply(tool_calls=[{"name": "read_file", "arguments": {"path": "/etc/passwd"}}]),  # not a tool
        Reply(tool_calls=[{"name": "ground", "arguments": {"box_threshold": "high"}}]),  # invalid arguments
        *GOOD_RUN,
    ]
    with openai_stub(*faults) as stub:
        state, seconds = _run(rig, _planner(stub.base_url))
    errors = [m.content for m in state["messages"] if m.type == "tool" and m.status == "error"]
    assert len(errors) == 3
    assert "not valid JSON" in errors[0] and "not a valid tool" in errors[1] and "box_threshold" in errors[2]
    assert len(_errors(rig)) == 3 and len(stub.requests) == len(faults)
    assert state["final"]["best_round"] == 0 and seconds < 30
    # The next request carried the error answers, paired with the calls they answer.
    replayed = stub.requests[3]["messages"]
    assert sum(m["role"] == "tool" for m in replayed) == 3


def test_a_planner_that_never_stops_is_ended_by_the_budget(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    with openai_stub(default=Reply(tool_calls=[{"name": "tag_audio", "arguments": {}}])) as stub:
        start = time.perf_counter()
        state = rig.run(llm_planner=_planner(stub.base_url), planner="llm", max_tool_calls=8)
    assert state["final"]["status"] == "budget_exhausted" and len(stub.requests) == 8
    assert state["final"]["flagged"] == "stopped by budget: tool-call budget of 8 used"
    assert time.perf_counter() - start < 30


def test_a_call_that_fails_the_same_way_three_times_stops_the_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    invalid = Reply(tool_calls=[{"name": "ground", "arguments": {"box_threshold": "high"}}])
    with openai_stub(default=invalid) as stub, pytest.raises(RepeatedToolFailure, match="ground failed 3 times"):
        rig.run(llm_planner=_planner(stub.base_url), planner="llm", max_tool_calls=20)
    assert len(stub.requests) == REPEATED_FAILURES
    assert [r["name"] for r in _errors(rig)] == ["ground"] * REPEATED_FAILURES + ["agent"]
    assert not (rig.run_dir / "result.json").exists()


def test_different_failures_in_a_row_leave_the_run_to_its_budget(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    faults = [
        Reply(tool_calls=[{"name": "ground", "arguments": {"box_threshold": "high"}}]),
        Reply(tool_calls=[{"name": "ground", "arguments": {"box_threshold": "low"}}]),
        Reply(tool_calls=[{"name": "ground", "arguments": {"box_threshold": "high"}}]),
        *GOOD_RUN,
    ]
    with openai_stub(*faults) as stub:
        state, _ = _run(rig, _planner(stub.base_url))
    assert state["final"]["best_round"] == 0 and len(stub.requests) == len(faults)


def test_only_consecutive_equal_failures_of_one_request_count() -> None:
    def call(name: str) -> AIMessage:
        return AIMessage("", tool_calls=[{"name": name, "args": {}, "id": name}])

    def answer(name: str, text: str, status: str = "error") -> ToolMessage:
        return ToolMessage(text, name=name, tool_call_id=name, status=status)

    failure = [call("segment"), answer("segment", "Error: the tool failed (RuntimeError: CUDA out of memory)")]
    assert "segment failed 3 times in a row (Error: the tool failed" in repeated_failure(failure * 3)
    assert repeated_failure(failure * 2) is None
    assert repeated_failure([*failure, HumanMessage("try again"), *failure * 2]) is None  # a new request
    assert repeated_failure([*failure, call("segment"), answer("segment", "ok", "success"), *failure * 2]) is None
    other = [call("ground"), answer("ground", "Error: the tool failed (RuntimeError: CUDA out of memory)")]
    assert repeated_failure([*failure, *other, *failure]) is None
