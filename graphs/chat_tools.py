"""The chat's tools: the agent's allowlist (less `finalize`: a conversation has no end state to reach) plus `save`,
which writes the run's outputs from the current masks, and `explain`, which reads the trace for "why" questions.

Both follow the agent's tools (graphs/agent_tools.py): one trace record per call, results framed as data, state
changed only through the returned Command.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from graphs.agent import answer_masks, best_attempt, flag_answer, rounds_summary
from graphs.agent_tools import AGENT_TOOLS, _ctx, _reply, _round
from graphs.chat_explain import explain_trace
from graphs.chat_state import last_user_text, latest_attempt, turn_attempts
from graphs.context import RunContext
from graphs.pipeline import Stage, traced_stage
from graphs.result import write_outputs
from tools.datamodel import frame_number
from tools.tracing import read_trace

Source = Literal["latest", "best"]
MAX_REQUEST_CHARS = 500


def write_chat_outputs(
    ctx: RunContext, state: dict[str, Any], source: Source, stage: Stage, thread_id: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write masks/, overlay.mp4 and result.json from the latest masks or the best critiqued round of this turn;
    returns the state update (the chosen round becomes the current masks) and a small result for the planner."""
    chosen = best_attempt(turn_attempts(state)) if source == "best" else None
    chosen = chosen or latest_attempt(state)
    masks, phrases, detections = answer_masks(state, chosen)
    masks_file = chosen["masks_file"] if chosen else state.get("masks_file", "")
    flagged = flag_answer(state, chosen) if masks_file or state.get("forced") else None
    summary = {
        "thread": thread_id,
        "turn": state.get("turn", 0),
        "request": last_user_text(state.get("messages", []))[:MAX_REQUEST_CHARS],
        "planner": state.get("planner"),
        "round": chosen["round"] if chosen else None,
        "verdict": chosen["verdict"] if chosen else None,
        "flagged": flagged,
        "rounds": rounds_summary(state.get("attempts", [])),
    }
    answered = {**state, "phrases": phrases, "detections": detections}
    outputs = write_outputs(ctx, answered, masks, stage, {"chat": summary})
    saved = {"masks_file": masks_file, "round": summary["round"], "turn": summary["turn"], "flagged": flagged}
    update = {
        "phrases": phrases,
        "detections": detections,
        "masks_file": masks_file,
        "critiqued": chosen is not None,
        "outputs": outputs,
        "saved": saved,
    }
    result = {
        "written": sorted(outputs),
        "round": summary["round"],
        "frames": [{"frame": frame_number(m.frame_index), "objects": [o.phrase for o in m.objects]} for m in masks],
        "flagged": flagged,
    }
    return update, result


def _thread_id(runtime: ToolRuntime[Any, Any]) -> str | None:
    return (runtime.config or {}).get("configurable", {}).get("thread_id")


@tool
def save(runtime: ToolRuntime[Any, Any], source: Source = "latest") -> Command:
    """Write the outputs the user sees: one mask PNG per frame in masks/, overlay.mp4 and result.json. `source`:
    "latest" (the latest masks) or "best" (the best-critiqued round of this request)."""
    ctx, state = _ctx(runtime), runtime.state
    with traced_stage(ctx, "tool_call", "save", round=_round(runtime), arguments={"source": source}) as stage:
        update, result = write_chat_outputs(ctx, state, source, stage, _thread_id(runtime))
        stage.summary.update(result=result)
    return _reply(runtime, result, stage, **update)


@tool
def explain(runtime: ToolRuntime[Any, Any], subject: str | None = None) -> Command:
    """What the run's trace says happened and why, in order: the user's requests, the planner's decisions and
    reasons, what each grounding found and missed, the translator's phrases and the critiques. `subject` (an object
    such as "piano") keeps the events that mention it; omit it for the latest events."""
    ctx = _ctx(runtime)
    with traced_stage(ctx, "tool_call", "explain", round=_round(runtime), arguments={"subject": subject}) as stage:
        records = read_trace(ctx.tracer.path) if ctx.tracer.path and ctx.tracer.path.is_file() else ctx.tracer.records
        result = explain_trace(records, subject, before_turn=runtime.state.get("turn"))
        stage.summary.update(result={"matched": result["matched"], "events": len(result["events"])})
    return _reply(runtime, result, stage)


CHAT_TOOLS: list[BaseTool] = [t for t in AGENT_TOOLS if t.name != "finalize"] + [save, explain]
CHAT_TOOL_NAMES = tuple(t.name for t in CHAT_TOOLS)
