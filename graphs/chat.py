"""The chat: a conversation about one clip on the agent's nodes, tools and budgets.

Each invocation is one user turn; its input appends the user's HumanMessage to the conversation:

    START -> turn -> [prepare -> decode_frames, first turn only] -> plan -> tools -> plan -> ... -> answer -> END

`turn` resets the per-turn budgets (tool calls, rounds counted from `round_base`, the deadline, which starts with
each invocation) and records the request in the trace; `prepare` and `decode_frames` are the agent's (the clip is
decoded once per conversation), here both before any planner step, because the chat's answers name frames; `plan`
is the agent's plan step with the chat's built-in handler (graphs/chat_policy.py) as the policy when no LLM is
configured, or the chat LLM (graphs/chat_planner.py), which ends the turn by answering in text; `tools` runs the
agent's tools plus save and explain (graphs/chat_tools.py); `answer` closes the turn: whenever the masks changed
and were not saved, it rewrites the outputs, and when a budget stopped the turn it says so. State lives in a
checkpointer per thread, so a conversation survives restarts.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import AIMessage, AnyMessage, ToolMessage
from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from graphs import chat_answers as answers
from graphs.agent import plan_turn, route_after_plan, tool_error_message
from graphs.agent import prepare as agent_prepare
from graphs.chat_intents import parse_request
from graphs.chat_policy import BuiltinChatHandler
from graphs.chat_state import ChatState, last_user_text
from graphs.chat_tools import CHAT_TOOLS, write_chat_outputs
from graphs.context import RunContext, run_context
from graphs.pipeline import decode, traced_stage
from prompts.chat import render_clip_facts

MAX_TRACED_TEXT = 4000


def start_turn(state: ChatState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Fresh budgets for the new request, and a chat_turn trace record of it."""
    ctx = run_context(runtime.context)
    planner = ctx.settings.planner  # type: ignore[attr-defined]
    turn = state.get("turn", 0) + 1
    text = last_user_text(state["messages"])
    request = parse_request(text).kind if planner == "builtin" else None
    ctx.tracer.emit("chat_turn", "user", turn=turn, text=text[:MAX_TRACED_TEXT], request=request, planner=planner)
    return {
        "turn": turn,
        "round_base": state.get("round", 0),
        "tool_calls_used": 0,
        "forced": "",
        "planner": planner,
        "phrases_before": state.get("phrases") or [],
    }


def route_turn(state: ChatState) -> Literal["prepare", "plan"]:
    return "plan" if state.get("frames") else "prepare"


def prepare(state: ChatState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """The agent's prepare; its task message becomes the clip facts of the chat prompt (the user's line is the
    request)."""
    update = agent_prepare(state, runtime)
    update.pop("messages")
    clip, audio = update["clip"], update["audio"]
    update["task"] = render_clip_facts(
        clip["name"],
        update["timestamps_s"],
        clip["width"],
        clip["height"],
        audio["audible"],
        audio.get("rms_dbfs"),
    )
    return update


def plan(state: ChatState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """One planner step: a tool call, or the answer (a message without tool calls)."""
    return plan_turn(state, run_context(runtime.context), BuiltinChatHandler(), final_action="answer")


def answer(state: ChatState, runtime: Runtime[RunContext]) -> dict[str, Any]:
    """Close the turn: save masks that changed, answer a budget stop, trace the answer."""
    ctx = run_context(runtime.context)
    last = state["messages"][-1]
    stopped = getattr(last, "tool_calls", None)
    messages: list[AnyMessage] = []
    update: dict[str, Any] = {}
    if stopped:  # a budget ended the turn (or the LLM called a finalize it does not have)
        reason = stopped[0]["args"].get("reason", "")
        messages.append(ToolMessage(f"stopped: {reason}", tool_call_id=stopped[0]["id"]))
    masks_file = state.get("masks_file")
    if masks_file and masks_file != (state.get("saved") or {}).get("masks_file"):
        thread_id = get_config().get("configurable", {}).get("thread_id")
        with traced_stage(ctx, "node", "save") as stage:
            saved, _ = write_chat_outputs(ctx, state, "best" if stopped else "latest", stage, thread_id)
        update.update(saved, timings_s={"save": stage.seconds})
    view = {**state, **update}
    if stopped:
        messages.append(AIMessage(answers.segmented(view, f"I stopped this request: {reason}.")))
    elif not str(last.content).strip():
        messages.append(AIMessage(answers.segmented(view, "(The planner gave no text.)")))
    text = str(messages[-1].content if messages else last.content)
    ctx.tracer.emit("chat_answer", "assistant", turn=state.get("turn", 0), text=text[:MAX_TRACED_TEXT])
    return {**update, "messages": messages}


def build_chat(context_schema: type = RunContext) -> StateGraph:
    """The uncompiled chat graph; compile it with a checkpointer and invoke it once per user line with
    {"source": ..., "messages": [HumanMessage(line)]} on the conversation's thread."""
    graph = StateGraph(ChatState, context_schema=context_schema)
    graph.add_node("turn", start_turn)
    graph.add_node("prepare", prepare)
    graph.add_node("decode_frames", decode)
    graph.add_node("plan", plan)
    graph.add_node("tools", ToolNode(CHAT_TOOLS, handle_tool_errors=tool_error_message))
    graph.add_node("answer", answer)
    graph.add_edge(START, "turn")
    graph.add_conditional_edges("turn", route_turn)
    graph.add_edge("prepare", "decode_frames")
    graph.add_edge("decode_frames", "plan")
    graph.add_conditional_edges("plan", route_after_plan, {"tools": "tools", "plan": "plan", "finalize": "answer"})
    graph.add_edge("tools", "plan")
    graph.add_edge("answer", END)
    return graph
