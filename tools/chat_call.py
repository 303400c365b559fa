"""One call to a LangChain chat model, with transport failures turned into one-line typed errors.

Retries belong to the model's client (the openai client retries 408/409/429/5xx itself); what is still failing
after them is raised as ModelUnavailableError naming the model and server, so the CLIs print one line.
"""

from __future__ import annotations

from collections.abc import Sequence

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from tools.errors import ModelOutputError, ModelUnavailableError


def invoke_chat(chat_model: BaseChatModel, messages: Sequence[BaseMessage], who: str) -> AIMessage:
    """The model's answer to `messages`; `who` names it in errors (e.g. "LLM gpt-4o", "critic VLM qwen")."""
    try:
        response = chat_model.invoke(list(messages))
    except Exception as err:
        import openai  # deferred: only OpenAI-backed models raise its errors, and it costs 0.5 s to import

        if isinstance(err, openai.APIError):
            where = getattr(chat_model, "openai_api_base", None)
            where = f" at {where}" if where else ""
            raise ModelUnavailableError(f"{who}{where} call failed: {type(err).__name__}: {err}") from err
        raise
    if not isinstance(response, AIMessage):
        raise ModelOutputError(f"{who} returned {type(response).__name__}, not a chat message")
    return response
