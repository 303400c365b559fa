"""Captions -> per-frame noun phrases of the sounding objects (the LLM step of OpenAVS).

Two implementations of one `Translator` Protocol:
- `LLMTranslator`: any langchain chat model, with the paper's prompt in one of its four consistency variants
  (prompts/translate.py). Output is parsed into phrases and validated in code; an unusable answer is sent back
  once with a correction, then the call fails with a ModelOutputError. HTTP-level retries (429, 5xx, timeouts)
  belong to the openai client alone (`build_chat_model` sets them); this module never retries them.
- `LexiconTranslator`: the deterministic built-in used when no LLM is configured (tools/lexicon.py).

Both return a `Translation` carrying the phrases plus everything the trace needs: rendered messages, raw answers,
token counts, attempts, timings and warnings.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field

from prompts.translate import (
    PROMPT_VERSION,
    VARIANTS,
    PromptMessage,
    TranslationParseError,
    Variant,
    call_groups,
    parse_translation,
    render_correction,
    render_translation_messages,
)
from tools.chat_call import invoke_chat
from tools.datamodel import frame_number
from tools.errors import InputError, ModelOutputError
from tools.lexicon import LEXICON_VERSION, frame_sources, phrase_for_label
from tools.models.base import Usage

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_openai import ChatOpenAI

__all__ = [
    "CallRecord",
    "LLMTranslator",
    "LexiconTranslator",
    "Translation",
    "TranslationFailedError",
    "TranslationParseError",
    "Translator",
    "build_chat_model",
    "validate_phrases",
]

Captions = Sequence[Sequence[str]]
Tags = Sequence[Sequence[tuple[str, float]]]

MAX_PHRASES_PER_FRAME = 5
MAX_WORDS_PER_PHRASE = 4
# Letters (any script), single spaces and hyphens: what a detector prompt needs and nothing an injection needs.
_PHRASE_RE = re.compile(r"^[^\W\d_]+(?:[ -][^\W\d_]+)*$")


class CallRecord(BaseModel):
    """One chat-model call as made: what was sent, what came back, its cost and its fate."""

    model_config = ConfigDict(extra="forbid")

    frames: list[int] = Field(description="clip frame indices this call covered")
    attempt: int = Field(description="1 for the first try, 2 for the corrected retry, ...")
    messages: list[PromptMessage]
    response: str
    input_tokens: int = 0
    output_tokens: int = 0
    ms: float = 0.0
    error: str | None = Field(default=None, description="why the answer was unusable, None when it was used")


class Translation(BaseModel):
    """Phrases per frame and the record of how they were obtained."""

    model_config = ConfigDict(extra="forbid")

    phrases: list[list[str]] = Field(description="per frame, the groundable phrases of the sounding objects")
    translator: str = Field(description='"llm" or "lexicon"')
    model_id: str
    variant: str | None = Field(default=None, description="prompt variant (LLM only)")
    prompt_version: str | None = None
    calls: list[CallRecord] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    @property
    def usage(self) -> Usage:
        """Token totals over all calls, failed attempts included (they were paid for)."""
        return Usage(
            input_tokens=sum(c.input_tokens for c in self.calls),
            output_tokens=sum(c.output_tokens for c in self.calls),
        )


class TranslationFailedError(ModelOutputError):
    """The LLM's answer stayed unusable after the correction retry; `calls` keeps every call made so far (this
    translation's earlier groups and the failed attempts) for the trace."""

    def __init__(self, message: str, calls: list[CallRecord]) -> None:
        super().__init__(message)
        self.calls = calls


@runtime_checkable
class Translator(Protocol):
    """Turns captions (frames x captions) and optional tagger labels into per-frame source phrases."""

    name: str

    def translate(self, captions: Captions, tags: Tags | None = None) -> Translation:
        """captions[i]: the texts describing frame i's audio; tags[i]: (label, score) pairs, best first."""
        ...


def validate_phrases(phrases: list[str], frame_index: int) -> tuple[list[str], list[str]]:
    """(phrases that pass, warnings): each phrase at most 4 words of letters / spaces / hyphens, at most 5 per
    frame. The checks are what a detector prompt can use; anything else is model chatter or an injection."""
    frame = frame_number(frame_index)
    kept: list[str] = []
    warnings: list[str] = []
    for phrase in phrases:
        if not _PHRASE_RE.match(phrase):
            warnings.append(f"frame {frame}: dropped phrase {phrase[:40]!r} (only letters, spaces, hyphens)")
        elif len(re.split(r"[ -]", phrase)) > MAX_WORDS_PER_PHRASE:
            warnings.append(f"frame {frame}: dropped phrase {phrase[:40]!r} (over {MAX_WORDS_PER_PHRASE} words)")
        elif phrase not in kept:
            kept.append(phrase)
    if len(kept) > MAX_PHRASES_PER_FRAME:
        warnings.append(f"frame {frame}: kept the first {MAX_PHRASES_PER_FRAME} of {len(kept)} phrases")
        kept = kept[:MAX_PHRASES_PER_FRAME]
    return kept, warnings


def _check_inputs(captions: Captions, tags: Tags | None) -> None:
    if tags is not None and len(tags) != len(captions):
        raise ValueError(f"tags cover {len(tags)} frames, captions {len(captions)}")


# -------------------------------------------------------------------------------------------------------- LLM


class LLMTranslator:
    """The paper's LLM step through any langchain chat model (the caller builds it, temperature included).

    variant: `both` (default, the paper's best: one call per clip, all captions), `frame` (one call per clip, first
    caption), `prompt` (one call per frame, all captions), `none` (one call per frame, first caption).
    max_retries: extra attempts after an UNPARSEABLE answer, each with the parse error as a correction message.
    Transport errors are not retried here: the chat model's client does that (see `build_chat_model`).
    """

    name = "llm"

    def __init__(self, chat_model: BaseChatModel, variant: Variant = "both", max_retries: int = 1) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown translation variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.chat_model = chat_model
        self.variant: Variant = variant
        self.max_retries = max_retries
        self.model_id = _model_id(chat_model)

    def translate(self, captions: Captions, tags: Tags | None = None) -> Translation:
        """One call per clip (frame consistency) or per frame; phrases parsed and validated per frame."""
        _check_inputs(captions, tags)
        phrases: list[list[str]] = []
        calls: list[CallRecord] = []
        warnings: list[str] = []
        for frames in call_groups(self.variant, len(captions)):
            group_captions = [captions[i] for i in frames]
            group_tags = [tags[i] for i in frames] if tags is not None else None
            parsed = self._call(frames, render_translation_messages(self.variant, group_captions, group_tags), calls)
            for frame, frame_phrases in zip(frames, parsed, strict=True):
                kept, notes = validate_phrases(frame_phrases, frame)
                phrases.append(kept)
                warnings.extend(notes)
        return Translation(
            phrases=phrases,
            translator=self.name,
            model_id=self.model_id,
            variant=self.variant,
            prompt_version=PROMPT_VERSION,
            calls=calls,
            warnings=warnings,
        )

    def _call(self, frames: list[int], messages: list[PromptMessage], calls: list[CallRecord]) -> list[list[str]]:
        """Invoke until the answer parses (at most 1 + max_retries times); records every attempt in `calls`."""
        conversation = list(messages)
        error: TranslationParseError | None = None
        for attempt in range(1, self.max_retries + 2):
            started = time.perf_counter()
            response = self._invoke(conversation)
            ms = (time.perf_counter() - started) * 1000
            text = response.text
            usage = response.usage_metadata or {}
            record = CallRecord(
                frames=frames,
                attempt=attempt,
                messages=list(conversation),
                response=text,
                input_tokens=usage.get("input_tokens", 0),
                output_tokens=usage.get("output_tokens", 0),
                ms=round(ms, 1),
            )
            calls.append(record)
            try:
                return parse_translation(text, len(frames))
            except TranslationParseError as err:
                error = err
                record.error = err.reason
                conversation += [PromptMessage("assistant", text), render_correction(err.reason, len(frames))]
        assert error is not None
        raise TranslationFailedError(
            f"LLM {self.model_id} gave no usable translation for frames {frame_number(frames[0])}-"
            f"{frame_number(frames[-1])} after "
            f"{self.max_retries + 1} attempts: {error.reason}",
            calls=list(calls),
        ) from error

    def _invoke(self, conversation: list[PromptMessage]) -> AIMessage:
        return invoke_chat(self.chat_model, _to_langchain(conversation), f"LLM {self.model_id}")


def _to_langchain(messages: list[PromptMessage]) -> list[BaseMessage]:
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m.role](content=m.content) for m in messages]


def _model_id(chat_model: object) -> str:
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(chat_model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(chat_model).__name__


def build_chat_model(
    model: str,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout_s: float = 60,
    max_retries: int = 2,
    temperature: float | None = 0.0,
) -> ChatOpenAI:
    """A ChatOpenAI for OpenAI or any OpenAI-compatible server (vLLM, Ollama, llama.cpp), set up deliberately.

    base_url / api_key default to OPENAI_BASE_URL / OPENAI_API_KEY. A server without auth needs only a base URL
    (a placeholder key is sent, since the openai client insists on one). timeout_s bounds each HTTP request
    (the client default is 600 s); max_retries is the openai client's retry count for connection errors,
    408/409/429 and 5xx, honouring Retry-After: this is the ONLY layer that retries transport errors.
    temperature 0 as the paper's choice for reproducibility; None leaves it to the server (some reasoning
    models reject any value). Chat Completions API only, non-streaming: every compatible server speaks it.
    Raises InputError when neither a key nor a base URL is available.
    """
    from langchain_openai import ChatOpenAI  # deferred: importing it costs ~1 s and only LLM users need it

    if not model or not model.strip():
        raise InputError("no LLM model name given")
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
    if api_key is None and base_url is None:
        raise InputError(
            "no LLM configured: set OPENAI_API_KEY (OpenAI) or OPENAI_BASE_URL (an OpenAI-compatible server), "
            "or run without an LLM to use the built-in lexicon translator"
        )
    return ChatOpenAI(
        model=model,
        base_url=base_url,
        api_key=api_key or "not-needed",
        timeout=timeout_s,
        max_retries=max_retries,
        temperature=temperature,
        streaming=False,
        use_responses_api=False,
    )


# ---------------------------------------------------------------------------------------------------- lexicon


class LexiconTranslator:
    """Deterministic built-in translator: lexicon matches in the captions, plus confident tagger labels.

    Per frame: every phrase found in the captions, judged together (tools/lexicon.py `frame_sources`), with its
    evidence = the number of the frame's captions naming it; tagger labels scoring >= min_tag_score, mapped to
    phrases (`phrase_for_label`), add their score. Phrases are ordered by evidence, then tag score, then first
    mention, and the first `max_phrases` kept. No smoothing across frames: a frame with nothing found gets no
    phrase, hence an empty mask.
    """

    name = "lexicon"

    def __init__(self, min_tag_score: float = 0.3, max_phrases: int = 3) -> None:
        self.min_tag_score = min_tag_score
        self.max_phrases = max_phrases
        self.model_id = f"builtin-{LEXICON_VERSION}"

    def translate(self, captions: Captions, tags: Tags | None = None) -> Translation:
        """Pure function of its inputs."""
        _check_inputs(captions, tags)
        phrases = [
            self._frame(frame_captions, tags[i] if tags is not None else ())
            for i, frame_captions in enumerate(captions)
        ]
        return Translation(
            phrases=phrases,
            translator=self.name,
            model_id=self.model_id,
            warnings=[
                "built-in lexicon translator used (no LLM configured): phrases come from keyword matching of the "
                "captions and tags, not from an LLM's judgement"
            ],
        )

    def _frame(self, captions: Sequence[str], tags: Sequence[tuple[str, float]]) -> list[str]:
        evidence = frame_sources(captions)
        tag_score: dict[str, float] = {}
        for label, score in tags:
            phrase = phrase_for_label(label) if score >= self.min_tag_score else None
            if phrase is not None:
                tag_score[phrase] = max(tag_score.get(phrase, 0.0), float(score))
        order = list(dict.fromkeys([*evidence, *tag_score]))  # first mention: captions first, then tags
        ranked = sorted(order, key=lambda p: (-evidence.get(p, 0), -tag_score.get(p, 0.0), order.index(p)))
        return ranked[: self.max_phrases]
