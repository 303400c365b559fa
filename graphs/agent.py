"""The agent: a planner that calls the OpenAVS tools, critiques its own masks and refines, within budgets.

    START -> prepare -> plan -> [decode_frames, once] -> tools -> plan -> ... -> finalize -> END

`prepare` starts decoding the sampled frames in the background and decodes the audio; `decode_frames` takes the
frames just before the first step that needs them, so they decode while the planner and the audio tools work.
`plan` asks the planner (an LLM bound to the tools, or the built-in policy) for ONE tool call; `tools` is a
LangGraph ToolNode over a fixed allowlist whose errors come back to the planner as messages; `finalize` keeps the
best critiqued result of all rounds and writes the run's outputs. Budgets (refine rounds, tool calls, wall clock,
recursion) end the run through `finalize` with the best masks so far, flagged. A planner LLM that fails after its
client's retries is replaced by the built-in planner for the rest of the run, and the run says so.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from graphs.agent_tools import AGENT_TOOLS, ToolInputError
from graphs.context import AgentSettings, RunContext, run_context
from graphs.pipeline import PipelineState, decode, traced_stage
from graphs.planners import BuiltinPlanner, Planner, PlannerTurn
from graphs.result import write_outputs
from graphs.stages import read_masks, start_loading
from prompts.planner import render_task
from tools.datamodel import Detections, FrameMasks, frame_number
from tools.errors import OpenAVSError


class AgentState(PipelineState, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    round: int
    tool_calls_used: int
    grounding: dict[str, Any]
    critiqued: bool
    attempts: Annotated[list[dict[str, Any]], operator.add]
    planner: str
    forced: str
    final: dict[str, Any]
    round_base: int
    """The round this invocation's budgets count from: 0 for one agent run; the chat sets it at each turn."""


REPEATED_FAILURES = 3
"""A tool call failing the same way this many times in a row ends the run: the planner is not getting anywhere (a
broken model or folder, or an LLM repeating a call it cannot fix), and only the budgets would stop it otherwise."""


class RepeatedToolFailure(OpenAVSError):
    """The same tool failed with the same error REPEATED_FAILURES times in a row. Exit code 1; the trace has every
    failure, and the run can be resumed once the cause is fixed."""


def _settings(ctx: RunContext) -> AgentSettings:
    return ctx.settings  # type: ignore[return-value]


def prepare(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Probe the clip, choose the sampled times, start decoding their frames (decode_frames takes them), decode the
    audio, and state the task."""
    ctx = run_context(runtime.context)
    with traced_stage(ctx, "node", "prepare") as stage:
        loaded = start_loading(ctx, state["source"])
        clip, times, audio = loaded["clip"], loaded["timestamps_s"], loaded["audio"]
        task = render_task(clip["name"], times, clip["width"], clip["height"], audio["audible"])
        stage.summary.update(n_frames=len(times), audible=audio["audible"])
        ctx.progress("prepare", f"{len(times)} frames at {clip['width']}x{clip['height']}, audible={audio['audible']}")
    return {
        **loaded,
        "messages": [HumanMessage(task)],
        "round": 0,
        "tool_calls_used": 0,
        "planner": _settings(ctx).planner,
        "timings_s": {"prepare": stage.seconds},
    }


def _rounds_used(state: AgentState) -> int:
    return state.get("round", 0) - state.get("round_base", 0)


def _budget_exhausted(state: AgentState, ctx: RunContext) -> str | None:
    settings = _settings(ctx)
    if state.get("tool_calls_used", 0) >= settings.max_tool_calls:
        return f"tool-call budget of {settings.max_tool_calls} used"
    if time.monotonic() - ctx.started_at > settings.deadline_s:
        return f"deadline of {settings.deadline_s:.0f} s passed"
    if _rounds_used(state) >= settings.max_rounds and state.get("critiqued"):
        return f"all {settings.max_rounds} rounds used"
    return None


def _finalize_call(reason: str) -> AIMessage:
    return AIMessage(content=reason, tool_calls=[{"name": "finalize", "args": {"reason": reason}, "id": "budget"}])


def plan(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One planner turn: a single tool call (or finalize), traced as an llm_call record."""
    return plan_turn(state, run_context(runtime.context), BuiltinPlanner())


def plan_turn(state: AgentState, ctx: RunContext, builtin: Planner, final_action: str = "finalize") -> dict[str, Any]:
    """The plan node's work with `builtin` as the policy when no LLM plans (or the LLM fails); `final_action`
    names a turn without a tool call in the trace (the chat graph reuses this with its own policy)."""
    settings = _settings(ctx)
    round_index = state.get("round", 0)
    exhausted = _budget_exhausted(state, ctx)
    if exhausted:
        ctx.tracer.emit("decision", "planner", round=round_index, action="finalize", reason=exhausted, forced=True)
        return {"messages": [_finalize_call(exhausted)], "forced": exhausted}
    rounds_left = settings.max_rounds - _rounds_used(state)
    calls_left = settings.max_tool_calls - state.get("tool_calls_used", 0)
    last = state["messages"][-1]
    if isinstance(last, ToolMessage) and last.status == "error":
        ctx.tracer.emit("error", last.name or "tool", round=round_index, error=str(last.content)[:500])
        repeated = repeated_failure(state["messages"])
        if repeated:
            raise RepeatedToolFailure(repeated)
    update: dict[str, Any] = {}
    planner = ctx.planner if state.get("planner", settings.planner) == "llm" else builtin
    try:
        turn = planner.next_turn(state, settings, rounds_left, calls_left)
    except Exception as err:  # the client already retried; any failure here hands over to the built-in policy
        message = f"planner LLM failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); " \
                  "the built-in planner continues the run"  # fmt: skip
        ctx.tracer.emit("error", "planner", round=round_index, error=message)
        ctx.progress("plan", message)
        update.update(planner="builtin", warnings=[message])
        turn = builtin.next_turn(state, settings, rounds_left, calls_left)
    messages = _checked_messages(turn.message)
    _trace_turn(ctx, turn, round_index, messages[0])
    calls = messages[0].tool_calls
    action = calls[0]["name"] if calls else final_action
    ctx.tracer.emit("decision", "planner", round=round_index, action=action, reason=str(turn.message.content)[:500])
    ctx.progress("plan", f"round {round_index}: {action} {calls[0]['args'] if calls else ''}".rstrip())
    before = state.get("usage", {}).get("planner", {})
    usage = {
        "input_tokens": before.get("input_tokens", 0) + turn.input_tokens,
        "output_tokens": before.get("output_tokens", 0) + turn.output_tokens,
        "calls": before.get("calls", 0) + 1,
    }
    seconds = state.get("timings_s", {}).get("plan", 0.0) + turn.ms / 1000
    return {
        **update,
        "messages": messages,
        "tool_calls_used": state.get("tool_calls_used", 0) + max(len(calls), 1),
        "usage": {"planner": usage},
        "timings_s": {"plan": round(seconds, 3)},
    }


def repeated_failure(messages: list[AnyMessage]) -> str | None:
    """Why to stop when the latest REPEATED_FAILURES tool answers of this request (since the last user message) are
    the same error from the same tool, else None."""
    answers: list[ToolMessage] = []
    for message in reversed(messages):
        if isinstance(message, HumanMessage) or len(answers) == REPEATED_FAILURES:
            break
        if isinstance(message, ToolMessage):
            answers.append(message)
    if len(answers) < REPEATED_FAILURES:
        return None
    first = answers[0]
    if any(a.status != "error" or (a.name, a.content) != (first.name, first.content) for a in answers):
        return None
    error = str(first.content).splitlines()[0][:300] if str(first.content) else ""
    return f"the agent stopped: {first.name or 'a tool call'} failed {REPEATED_FAILURES} times in a row ({error})"


def _checked_messages(response: AIMessage) -> list[AnyMessage]:
    """The planner's message trimmed to one tool call, followed by an error answer for every call that could not
    be parsed (malformed JSON arguments), so the next turn sees what went wrong."""
    calls = list(response.tool_calls)
    invalid = list(getattr(response, "invalid_tool_calls", []) or [])
    kept = response.model_copy(update={"tool_calls": calls[:1], "invalid_tool_calls": [] if calls else invalid})
    if calls:
        return [kept]
    errors = [
        ToolMessage(
            f"Error: the call to {bad.get('name')!r} had arguments that are not valid JSON ({bad.get('error')}). "
            "Call the tool again with valid JSON arguments.",
            tool_call_id=bad.get("id") or "invalid",
            status="error",
        )
        for bad in invalid
    ]
    return [kept, *errors]


def _trace_turn(ctx: RunContext, turn: PlannerTurn, round_index: int, message: AIMessage) -> None:
    ctx.tracer.emit(
        "llm_call",
        "planner",
        turn.ms,
        round=round_index,
        model=turn.model,
        messages=turn.rendered,
        response=str(message.content),
        tool_calls=[{"name": c["name"], "args": c["args"]} for c in message.tool_calls],
        invalid_tool_calls=[dict(c) for c in getattr(message, "invalid_tool_calls", []) or []],
        input_tokens=turn.input_tokens,
        output_tokens=turn.output_tokens,
    )


def route_after_plan(state: AgentState) -> Literal["tools", "plan", "finalize"]:
    last = state["messages"][-1]
    if isinstance(last, ToolMessage):
        return "plan"  # answers to malformed calls: let the planner try again (the budgets bound this)
    if not last.tool_calls or last.tool_calls[0]["name"] == "finalize":
        return "finalize"
    return "tools"


FRAMELESS_TOOLS = frozenset({"describe_audio", "tag_audio", "translate", "sample_frames"})
"""Tools that need no decoded frame: the audio ones listen at the sampled times, sample_frames decodes its own (into
the same files: its decode waits behind prepare's on the one prefetch thread, so the old frames never overwrite the
new)."""


def route_with_frames(state: AgentState) -> Literal["decode_frames", "tools", "plan", "finalize"]:
    """route_after_plan, through decode_frames first when the next step needs the frames and none were taken yet."""
    step = route_after_plan(state)
    if step == "plan" or "frames" in state:
        return step
    if step == "tools" and state["messages"][-1].tool_calls[0]["name"] in FRAMELESS_TOOLS:
        return step
    return "decode_frames"


def tool_error_message(err: Exception) -> str:
    """What the planner reads when a tool call fails: recoverable errors as a plain instruction to fix the call."""
    if isinstance(err, ToolInputError | OpenAVSError):
        return f"Error: {err}"
    return f"Error: the tool failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"


def finalize(state: AgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Keep the best critiqued round (the latest masks when none was critiqued) and write the outputs."""
    ctx = run_context(runtime.context)
    settings = _settings(ctx)
    attempts = state.get("attempts", [])
    with traced_stage(ctx, "node", "finalize") as stage:
        best = best_attempt(attempts)
        masks, phrases, detections = answer_masks(state, best)
        last = state["messages"][-1]
        reason = (
            last.tool_calls[0]["args"].get("reason", "") if getattr(last, "tool_calls", None) else str(last.content)
        )
        flagged = flag_answer(state, best)
        final = {
            "graph": "agent",
            "planner": state.get("planner", settings.planner),
            "status": "budget_exhausted" if state.get("forced") else "ok",
            "reason": reason,
            "flagged": flagged,
            "confidence": best["verdict"]["score"] if best else None,
            "best_round": best["round"] if best else None,
            "rounds": rounds_summary(attempts),
            "tool_calls_used": state.get("tool_calls_used", 0),
        }
        outputs = write_outputs(
            ctx, {**state, "phrases": phrases, "detections": detections}, masks, stage, {"agent": final}
        )
        stage.summary.update(best_round=final["best_round"], flagged=flagged, status=final["status"])
    answer = _answer_text(phrases, final)
    messages: list[AnyMessage] = []
    if getattr(last, "tool_calls", None):
        messages.append(ToolMessage(f"finalized: {reason}", tool_call_id=last.tool_calls[0]["id"]))
    messages.append(AIMessage(answer))
    return {
        "phrases": phrases,
        "detections": detections,
        "final": final,
        "outputs": outputs,
        "messages": messages,
        "timings_s": {"finalize": stage.seconds},
    }


def best_attempt(attempts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best critiqued round (the latest of equal scores), or None when nothing was critiqued."""
    return max(attempts, key=lambda a: (a["verdict"]["score"], a["round"])) if attempts else None


def answer_masks(
    state: AgentState, attempt: dict[str, Any] | None
) -> tuple[list[FrameMasks], list[list[str]], list[dict[str, Any]]]:
    """Masks, phrases and detections per frame of `attempt`, or of the latest state when it is None; frames with
    nothing segmented get empty masks."""
    source = attempt if attempt is not None else state
    frames = state["frames"]
    masks_file = source.get("masks_file")
    masks = read_masks(masks_file) if masks_file else [FrameMasks(f["index"], f["height"], f["width"]) for f in frames]
    phrases = source.get("phrases") or [[] for _ in frames]
    detections = source.get("detections") or [Detections.empty(f["index"]).to_dict() for f in frames]
    return masks, phrases, detections


def rounds_summary(attempts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each critiqued round as result.json reports it."""
    return [
        {
            "round": a["round"],
            "phrases": a["phrases"],
            "grounding": a["grounding"],
            "verdict": a["verdict"],
            "findings": [f["detail"] for f in a["findings"]],
        }
        for a in attempts
    ]


def flag_answer(state: AgentState, best: dict[str, Any] | None) -> str | None:
    """Why the answer deserves less trust, or None."""
    if state.get("forced"):
        return f"stopped by budget: {state['forced']}"
    if not state["audio"]["audible"]:
        return None
    if best is None:
        return "no critique ran: the masks are unchecked"
    if not best["verdict"]["ok"]:
        return f"best critique not ok (score {best['verdict']['score']:.2f}): {best['verdict'].get('suggestion', '')}"
    return None


def _answer_text(phrases: list[list[str]], final: dict[str, Any]) -> str:
    per_frame = "; ".join(f"frame {frame_number(k)}: {', '.join(p) or 'nothing'}" for k, p in enumerate(phrases))
    confidence = "" if final["confidence"] is None else f" Confidence {final['confidence']:.2f}."
    flag = f" Flagged: {final['flagged']}." if final["flagged"] else ""
    return f"Sounding objects — {per_frame}.{confidence}{flag}"


def build_agent(context_schema: type = RunContext) -> StateGraph:
    """The uncompiled agent graph; compile it with a checkpointer to run. `context_schema` is RunContext, or
    graphs.context.StudioContext for LangGraph servers (see agent/studio.py)."""
    graph = StateGraph(AgentState, context_schema=context_schema)
    graph.add_node("prepare", prepare)
    graph.add_node("plan", plan)
    graph.add_node("decode_frames", decode)
    graph.add_node("tools", ToolNode(AGENT_TOOLS, handle_tool_errors=tool_error_message))
    graph.add_node("finalize", finalize)
    graph.add_edge(START, "prepare")
    graph.add_edge("prepare", "plan")
    graph.add_conditional_edges("plan", route_with_frames)
    graph.add_conditional_edges("decode_frames", route_with_frames)
    graph.add_edge("tools", "plan")
    graph.add_edge("finalize", END)
    return graph
