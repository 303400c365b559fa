"""Planners: what the agent does next. Each returns one AIMessage with at most one tool call.

- ChatPlanner: any LangChain chat model with tool calling (ChatOpenAI against OpenAI or a vLLM/Ollama/llama.cpp
  server, or a local transformers model), shown the system prompt, the task and the tool results so far.
- BuiltinPlanner: no model; runs the paper's sequence, then a fixed refinement policy driven by the critic's
  findings. It is the default when no LLM is configured, and the fallback when the planner LLM fails.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, AnyMessage, SystemMessage, message_chunk_to_message

from graphs.context import AgentSettings
from prompts.planner import render_system_prompt
from tools.datamodel import frame_number

MIN_BOX_THRESHOLD = 0.15
MAX_BOX_THRESHOLD = 0.5
THRESHOLD_STEP = 0.05


@dataclass
class PlannerTurn:
    """One planner decision: the message to append, and what the trace records of it."""

    message: AIMessage
    rendered: list[dict[str, str]]
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Planner(Protocol):
    name: str

    def next_turn(
        self, state: dict[str, Any], settings: AgentSettings, rounds_left: int, calls_left: int
    ) -> PlannerTurn:
        """Decide the next tool call from the run's state and message history."""
        ...


def _call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "tool_call"}


def render_messages(messages: list[AnyMessage]) -> list[dict[str, str]]:
    """Messages as {role, content} for the trace (tool calls shown as JSON-ish text)."""
    rendered = []
    for m in messages:
        content = m.content if isinstance(m.content, str) else str(m.content)
        calls = getattr(m, "tool_calls", None)
        if calls:
            content += "".join(f"\n→ {c['name']}({c['args']})" for c in calls)
        rendered.append({"role": m.type, "content": content})
    return rendered


class ChatPlanner:
    """A tool-calling chat model as the planner. Transport retries belong to the model's client (one layer).

    `on_token`, when set, receives the answer's text as it streams (the model is then called with `stream`);
    subclasses change what the model is shown by overriding `prompt_messages` (graphs/chat_planner.py does).
    """

    name = "llm"

    def __init__(
        self,
        chat_model: BaseChatModel,
        tools: list[Any],
        model_name: str,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        try:
            self.bound = chat_model.bind_tools(tools, parallel_tool_calls=False)
        except TypeError:  # models whose bind_tools takes no parallel_tool_calls
            self.bound = chat_model.bind_tools(tools)
        self.model_name = model_name
        self.on_token = on_token

    def prompt_messages(self, state: dict[str, Any], rounds_left: int, calls_left: int) -> list[AnyMessage]:
        """What the model is shown: the system prompt, then the run's messages."""
        return [SystemMessage(render_system_prompt(rounds_left, calls_left)), *state["messages"]]

    def _respond(self, messages: list[AnyMessage]) -> AIMessage:
        if self.on_token is None:
            return self.bound.invoke(messages)
        merged: AIMessageChunk | None = None
        for chunk in self.bound.stream(messages):
            if chunk.text:
                self.on_token(chunk.text)
            merged = chunk if merged is None else merged + chunk
        if merged is None:
            raise RuntimeError("the chat model streamed no answer")
        return message_chunk_to_message(merged)

    def next_turn(
        self, state: dict[str, Any], settings: AgentSettings, rounds_left: int, calls_left: int
    ) -> PlannerTurn:
        messages = self.prompt_messages(state, rounds_left, calls_left)
        start = time.perf_counter()
        response = self._respond(messages)
        usage = response.usage_metadata or {}
        return PlannerTurn(
            message=response,
            rendered=render_messages(messages),
            model=self.model_name,
            input_tokens=usage.get("input_tokens", 0),
            output_tokens=usage.get("output_tokens", 0),
            ms=(time.perf_counter() - start) * 1000,
        )


class BuiltinPlanner:
    """The paper's sequence, then refinement driven by the critique, within the round budget."""

    name = "builtin"

    def next_turn(
        self, state: dict[str, Any], settings: AgentSettings, rounds_left: int, calls_left: int
    ) -> PlannerTurn:
        reason, call = self._decide(state, settings, rounds_left)
        message = AIMessage(content=reason, tool_calls=[call])
        return PlannerTurn(message=message, rendered=[{"role": "policy", "content": reason}], model="builtin")

    def _decide(self, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> tuple[str, dict]:
        called = {m.name for m in state["messages"] if m.type == "tool" and m.status != "error"}
        if not state["audio"]["audible"]:
            return "Nothing is audible, so nothing makes a sound.", _call("finalize", reason="nothing audible")
        if settings.oracle_phrases is not None:
            if not state.get("phrases"):
                return "Oracle phrases stand in for the audio.", _call(
                    "ground", all_frames=list(settings.oracle_phrases)
                )
        else:
            if settings.captioner and "describe_audio" not in called:
                return "First, what does each frame's audio sound like?", _call("describe_audio")
            if settings.tagger and "tag_audio" not in called:
                return "A second opinion: scored sound labels.", _call("tag_audio")
            if "translate" not in called:
                return "Name the sounding objects from the captions and tags.", _call("translate")
            if not any(state["phrases"]):
                return "No sounding object was named in any frame.", _call(
                    "finalize", reason="no sounding object named"
                )
        if not state.get("detections") and "ground" not in called:
            return "Find the named objects in the frames.", _call("ground")
        if not state.get("masks_file"):
            return "Segment the boxes.", _call("segment")
        if not state.get("critiqued"):
            return "Check the masks before answering.", _call("critique")
        last = state["attempts"][-1]
        if last["verdict"]["ok"]:
            return f"The critique is ok (score {last['verdict']['score']:.2f}).", _call("finalize", reason="verdict ok")
        if rounds_left <= 0:
            return "The refinement budget is used up.", _call("finalize", reason="refinement budget used")
        refined = refine(state, settings)
        if refined is None:
            return "Every refinement the findings suggest was tried.", _call("finalize", reason="no untried refinement")
        why, args = refined
        return why, _call("ground", **args)


def refine(state: dict[str, Any], settings: AgentSettings) -> tuple[str, dict[str, Any]] | None:
    """The next untried ground() arguments the last critique's findings call for, with the reason; None when
    every change they suggest was already tried."""
    last = state["attempts"][-1]
    grounding = last.get("grounding") or {}
    box = grounding.get("box_threshold", settings.box_threshold)
    one_at_a_time = grounding.get("one_at_a_time", False)
    phrases = [list(p) for p in last["phrases"]]
    problems = {f["problem"] for f in last["findings"]}
    reasons = []

    unsupported = [(f["frame_index"], f["phrase"]) for f in last["findings"] if f["problem"] == "unsupported_phrase"]
    dropped: dict[str, list[int]] = {}
    for frame, phrase in unsupported:
        if frame is not None and phrase in phrases[frame] and len(phrases[frame]) > 1:
            phrases[frame].remove(phrase)
            dropped.setdefault(phrase, []).append(frame)
    if dropped:
        listed = ", ".join(
            f"'{p}' (frames {', '.join(str(frame_number(k)) for k in frames)})" for p, frames in dropped.items()
        )
        reasons.append(f"drop {listed}: the audio does not support them")
    if "area_jump" in problems:
        union = list(dict.fromkeys(p for frame in phrases for p in frame))
        phrases = [union for _ in phrases]
        reasons.append("use the same phrases in every frame: the mask area jumps between frames")
    if "empty_mask" in problems:
        box = max(MIN_BOX_THRESHOLD, round(box - THRESHOLD_STEP, 3))
        one_at_a_time = True
        reasons.append(f"lower the box threshold to {box} and ground phrases one at a time: some found nothing")
    elif problems & {"full_frame", "low_score", "wrong_object"}:
        box = min(MAX_BOX_THRESHOLD, round(box + THRESHOLD_STEP, 3))
        reasons.append(f"raise the box threshold to {box}: masks are too large or boxes uncertain")

    tried = [(a["phrases"], (a.get("grounding") or {}).get("box_threshold", settings.box_threshold),
              (a.get("grounding") or {}).get("one_at_a_time", False)) for a in state["attempts"]]  # fmt: skip
    if not reasons or (phrases, box, one_at_a_time) in tried:
        return None
    args = {"phrases": phrases, "box_threshold": box, "one_at_a_time": one_at_a_time}
    return "Refine: " + "; ".join(reasons) + ".", args
