"""The chat LLM as planner: graphs/planners.ChatPlanner shown the chat's system prompt and a bounded history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage

from graphs.chat_tools import CHAT_TOOLS
from graphs.planners import ChatPlanner
from prompts.chat import render_chat_system_prompt

MAX_FULL_TURNS = 6
"""Turns the model sees whole; earlier ones keep only the user's line and the answer."""


def bounded_history(messages: list[AnyMessage], full_turns: int = MAX_FULL_TURNS) -> list[AnyMessage]:
    """The conversation with earlier turns reduced to user lines and answers (their tool calls and results go
    together, so every remaining call keeps its result); the last `full_turns` turns whole."""
    starts = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if len(starts) <= full_turns:
        return list(messages)
    cut = starts[-full_turns]
    older = [m for m in messages[:cut] if _is_line_or_answer(m)]
    return older + list(messages[cut:])


def _is_line_or_answer(message: AnyMessage) -> bool:
    return isinstance(message, HumanMessage) or (isinstance(message, AIMessage) and not message.tool_calls)


class ChatLLMPlanner(ChatPlanner):
    """A tool-calling chat model that converses: the chat system prompt (with the clip's facts), then the
    conversation; the turn ends when it answers without a tool call."""

    def prompt_messages(self, state: dict[str, Any], rounds_left: int, calls_left: int) -> list[AnyMessage]:
        system = SystemMessage(render_chat_system_prompt(state.get("task", ""), rounds_left, calls_left))
        return [system, *bounded_history(state["messages"])]


def streaming(chat_model: BaseChatModel) -> BaseChatModel:
    """The model with streaming switched on where it was switched off (tools/translate.build_chat_model makes
    non-streaming clients for the translator): the chat shows the answer as it is written. OpenAI clients also
    ask for the token counts at the end of the stream (stream_options.include_usage), which the trace records."""
    if getattr(chat_model, "streaming", None) is not False:
        return chat_model
    update: dict[str, Any] = {"streaming": True}
    if "stream_usage" in type(chat_model).model_fields and getattr(chat_model, "stream_usage", None) is None:
        update["stream_usage"] = True
    return chat_model.model_copy(update=update)


def chat_llm_planner(
    chat_model: BaseChatModel, model_name: str, on_token: Callable[[str], None] | None = None
) -> ChatLLMPlanner:
    """The chat planner over any tool-calling chat model, bound to the chat's tools."""
    return ChatLLMPlanner(chat_model, CHAT_TOOLS, model_name, on_token=on_token)
