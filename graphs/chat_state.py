"""The chat graph's state and the read-only views of it that the chat's tools, handler and answers share.

The conversation is the agent's `messages` list: each user line is a HumanMessage, followed by the planner's tool
calls, their results (ToolMessages whose `artifact` keeps the tool's result as data) and, last, the answer (an
AIMessage without tool calls). A turn is everything after its HumanMessage.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AnyMessage, HumanMessage, ToolMessage

from graphs.agent import AgentState


class ChatState(AgentState, total=False):
    turn: int
    """User turns so far (1 during the first)."""
    task: str
    """The clip's facts (name, size, frames and their times) for the chat LLM's system prompt."""
    saved: dict[str, Any]
    """What the run folder's outputs show: masks_file, round, turn, flagged ({} before the first save)."""
    phrases_before: list[list[str]]
    """The phrases when the turn began, to say what a request changed."""


def turn_start(messages: list[AnyMessage]) -> int:
    """Position of the current turn's HumanMessage (0 when there is none)."""
    return next((i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], HumanMessage)), 0)


def last_user_text(messages: list[AnyMessage]) -> str:
    """The current turn's user line."""
    message = messages[turn_start(messages)] if messages else None
    return message.content if isinstance(message, HumanMessage) and isinstance(message.content, str) else ""


def turn_results(messages: list[AnyMessage], name: str) -> list[dict[str, Any]]:
    """Results of this turn's successful calls of one tool, in order."""
    return [
        m.artifact or {}
        for m in messages[turn_start(messages) :]
        if isinstance(m, ToolMessage) and m.name == name and m.status != "error"
    ]


def heard_phrases(messages: list[AnyMessage]) -> list[list[str]] | None:
    """What the translator named per frame, from its latest result for the current frames (sample_frames makes
    earlier translations stale); None when the current frames were never translated."""
    for m in reversed(messages):
        if not isinstance(m, ToolMessage) or m.status == "error":
            continue
        if m.name == "sample_frames":
            return None
        if m.name == "translate" and m.artifact:
            return [list(f["phrases"]) for f in m.artifact["frames"]]
    return None


def turn_attempts(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The critiqued rounds of the current turn."""
    base = state.get("round_base", 0)
    return [a for a in state.get("attempts", []) if a["round"] >= base]


def latest_attempt(state: dict[str, Any]) -> dict[str, Any] | None:
    """The critique of the current masks, or None when they were not critiqued."""
    attempts = state.get("attempts", [])
    if state.get("critiqued") and attempts and attempts[-1]["masks_file"] == state.get("masks_file"):
        return attempts[-1]
    return None


def known_phrases(state: dict[str, Any]) -> list[str]:
    """Every object phrase the conversation has used so far: heard, grounded or named by the user."""
    phrases = [p for frame in heard_phrases(state.get("messages", [])) or [] for p in frame]
    phrases += [p for frame in state.get("phrases") or [] for p in frame]
    phrases += [p for a in state.get("attempts", []) for frame in a["phrases"] for p in frame]
    return list(dict.fromkeys(phrases))
