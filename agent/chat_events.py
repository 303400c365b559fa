"""What a chat turn tells its caller as it runs: ChatEvent, and the events made from the graph's stream."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, ToolMessage

EventKind = Literal["progress", "token", "tool", "answer", "error"]
MAX_ARGS_CHARS = 160


@dataclass(frozen=True)
class ChatEvent:
    """One thing that happened during a turn.

    progress: a stage's progress line (data: stage). token: a piece of the LLM's text as it streams.
    tool: a tool call starting (data: phase "start", name, args) or ending (phase "end", name, status, result).
    answer: the turn's answer, the last event of a turn that succeeded (data: turn; streamed: the tokens already
    showed it; outputs: the files, when this turn wrote them; flagged: why to trust it less, or None).
    error: the turn failed (data: type); the conversation goes on.
    """

    kind: EventKind
    text: str
    data: dict[str, Any] = field(default_factory=dict)


def _messages(value: Any) -> list[Any]:
    """The messages a node wrote, whatever shape its update has (a dict, or a ToolNode's list of updates)."""
    if isinstance(value, dict):
        return list(value.get("messages", []))
    if isinstance(value, list | tuple):
        return [m for item in value for m in _messages(item)]
    update = getattr(value, "update", None)  # a Command
    return _messages(update) if update is not None else []


def _brief(args: dict[str, Any]) -> str:
    text = json.dumps(args, ensure_ascii=False, default=str)[1:-1]
    return text if len(text) <= MAX_ARGS_CHARS else text[: MAX_ARGS_CHARS - 1] + "…"


def tool_events(update: dict[str, Any]) -> list[ChatEvent]:
    """Tool-call events from one "updates" chunk of the chat graph's stream."""
    events = []
    for node, value in update.items():
        for message in _messages(value):
            if node == "plan" and isinstance(message, AIMessage):
                for call in message.tool_calls:
                    if call["name"] == "finalize":  # a budget stopped the turn: not a tool that runs
                        reason = call["args"].get("reason", "")
                        events.append(ChatEvent("progress", f"stopped: {reason}", {"stage": "budget"}))
                        continue
                    data = {"phase": "start", "name": call["name"], "args": call["args"]}
                    events.append(ChatEvent("tool", f"{call['name']}({_brief(call['args'])})", data))
            elif node == "tools" and isinstance(message, ToolMessage):
                ok = message.status != "error"
                first = str(message.content).strip().splitlines()[0] if str(message.content).strip() else ""
                text = f"{message.name} done" if ok else f"{message.name} failed: {first.removeprefix('Error: ')}"
                data = {"phase": "end", "name": message.name, "status": message.status, "result": message.artifact}
                events.append(ChatEvent("tool", text, data))
    return events


def answer_event(values: dict[str, Any], streamed: str, outputs: dict[str, str]) -> ChatEvent:
    """The turn's answer: the conversation's last message, with what the turn saved."""
    last = values["messages"][-1]
    text = last.text if isinstance(last, AIMessage) else str(last.content)
    saved = values.get("saved") or {}
    this_turn = saved.get("turn") == values.get("turn")
    data = {
        "turn": values.get("turn"),
        "streamed": bool(streamed.strip()) and streamed.strip() == text.strip(),
        "outputs": outputs if this_turn else {},
        "flagged": saved.get("flagged") if this_turn else None,
    }
    return ChatEvent("answer", text, data)
