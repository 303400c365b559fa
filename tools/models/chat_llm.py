"""A local transformers chat model with tool calling, as a LangChain chat model: the agent's planner without a server.

`TransformersChatModel` wraps a causal LM and its tokenizer (Qwen2.5-Instruct by default, e.g.
Qwen/Qwen2.5-7B-Instruct or Qwen/Qwen2.5-1.5B-Instruct). `bind_tools` stores the tools as OpenAI-format JSON
schemas; each call renders the conversation and those schemas through the tokenizer's chat template, generates
greedily (at most `max_new_tokens`), and parses the Qwen2.5 / Hermes tool-call format,

    <tool_call>
    {"name": "ground", "arguments": {"all_frames": ["dog"]}}
    </tool_call>

into AIMessage.tool_calls. A block that is not a JSON object with a name becomes an `invalid_tool_calls` entry, which
the agent answers with an error message so that the next turn can correct it. Other checkpoints whose chat template
takes `tools=` and which write this format (Hermes-style tool calling) work the same way.

Faces (see ModelSpec, role "planner", family "qwen2_chat"): `real` loads a hub id or local folder with
AutoModelForCausalLM + AutoTokenizer (bfloat16 on accelerators); `tiny` builds a seeded 2-layer Qwen2 with an
in-memory byte-level tokenizer and `QWEN2_5_TOOL_TEMPLATE` (tests and offline smoke runs; its output is noise).
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import torch
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    InvalidToolCall,
    SystemMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.tool import invalid_tool_call, tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field, PrivateAttr
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from tools.errors import InputError
from tools.models.base import DType, Face, ModelSpec
from tools.models.registry import load_pretrained, pick_device, torch_dtype
from tools.models.tiny_text import qwen2_byte_tokenizer, seeded_model, tiny_qwen2_text

FAMILY = "qwen2_chat"
DEFAULT_MODEL_ID = "Qwen/Qwen2.5-7B-Instruct"
MAX_NEW_TOKENS = 256  # one tool call with a few phrases per frame is 30-150 BPE tokens; bounds a rambling turn
TOOL_CALL_OPEN, TOOL_CALL_CLOSE = "<tool_call>", "</tool_call>"

QWEN2_5_TOOL_TEMPLATE = r"""
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set system_message = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' %}
    {%- set loop_messages = messages %}
{%- endif %}
{{- '<|im_start|>system\n' + system_message }}
{%- if tools %}
    {{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n' }}
    {{- 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' + (tool | tojson) }}
    {%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within ' }}
    {{- '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}' }}
    {{- '\n</tool_call>' }}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- for message in loop_messages %}
    {%- if message['role'] == 'tool' %}
        {%- if loop.first or loop_messages[loop.index0 - 1]['role'] != 'tool' %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message['content'] + '\n</tool_response>' }}
        {%- if loop.last or loop_messages[loop.index0 + 1]['role'] != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- else %}
        {{- '<|im_start|>' + message['role'] }}
        {%- if message['content'] or not message['tool_calls'] %}
            {{- '\n' + message['content'] }}
        {%- endif %}
        {%- for call in message['tool_calls'] or [] %}
            {%- if call['function'] is defined %}
                {%- set call = call['function'] %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' + call['name'] + '", "arguments": ' + (call['arguments'] | tojson) }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
""".strip()
"""A Qwen2.5-Instruct-style chat template (Jinja) rendering tools, tool calls and tool responses as Qwen2.5 does:
tool schemas in a <tools> block of the system turn, calls as <tool_call> JSON in the assistant turn, results as
<tool_response> blocks of one user turn. Used by the tiny face and for real checkpoints that ship no template."""

_TOOL_CALL_RE = re.compile(re.escape(TOOL_CALL_OPEN) + r"(.*?)(" + re.escape(TOOL_CALL_CLOSE) + r"|\Z)", re.DOTALL)
_NAME_RE = re.compile(r'"name"\s*:\s*"([^"]+)"')


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:12]}"


def _parse_block(body: str, closed: bool) -> ToolCall | InvalidToolCall:
    """One <tool_call> block's body as a tool call, or an invalid call saying what is wrong with it."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            raise ValueError('expected a JSON object {"name": ..., "arguments": {...}}')
        args = data.get("arguments", {})
        if isinstance(args, str):  # some fine-tunes write the arguments as a JSON string, as OpenAI's API does
            args = json.loads(args)
        if not isinstance(args, dict):
            raise ValueError("the arguments must be a JSON object")
    except ValueError as err:  # json.JSONDecodeError is a ValueError
        error = f"{err}" + ("" if closed else f" (no closing {TOOL_CALL_CLOSE})")
        name = _NAME_RE.search(body)
        return invalid_tool_call(name=name.group(1) if name else None, args=body, id=_call_id(), error=error)
    return tool_call(name=data["name"], args=args, id=_call_id())


def parse_completion(text: str) -> AIMessage:
    """A completion as an AIMessage: every <tool_call> block becomes a tool call (or an invalid one, for a block that
    is not a JSON object with a name and object arguments); the text outside the blocks is the content.

    A block cut off by the token limit or the end of the turn is parsed up to the end of the text.
    """
    calls: list[ToolCall] = []
    invalid: list[InvalidToolCall] = []
    for match in _TOOL_CALL_RE.finditer(text):
        parsed = _parse_block(match.group(1).strip(), closed=bool(match.group(2)))
        (calls if parsed.get("type") == "tool_call" else invalid).append(parsed)  # type: ignore[arg-type]
    content = _TOOL_CALL_RE.sub("", text).strip()
    return AIMessage(content=content, tool_calls=calls, invalid_tool_calls=invalid)


def chat_messages(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as the {role, content, tool_calls} dicts transformers chat templates take.

    An assistant turn's unparsable calls are written back as the raw blocks the model wrote, so that the next turn
    sees its own mistake next to the error answer.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        text = str(message.text)
        if isinstance(message, SystemMessage):
            out.append({"role": "system", "content": text})
        elif isinstance(message, HumanMessage):
            out.append({"role": "user", "content": text})
        elif isinstance(message, AIMessage):
            bad_calls = message.invalid_tool_calls
            raw = "".join(f"\n{TOOL_CALL_OPEN}\n{bad.get('args') or ''}\n{TOOL_CALL_CLOSE}" for bad in bad_calls)
            calls = [
                {"type": "function", "function": {"name": c["name"], "arguments": c["args"]}}
                for c in message.tool_calls
            ]
            out.append({"role": "assistant", "content": (text + raw).strip(), "tool_calls": calls})
        elif isinstance(message, ToolMessage):
            out.append({"role": "tool", "content": text, "name": message.name or ""})
        else:
            raise ValueError(f"{type(message).__name__} messages cannot be rendered by a chat template")
    return out


def eos_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Token ids that end a turn: the checkpoint's generation config's (Qwen2.5: <|im_end|> and <|endoftext|>),
    else the tokenizer's end-of-sequence token."""
    eos = model.generation_config.eos_token_id
    eos = tokenizer.eos_token_id if eos is None else eos
    return set(eos) if isinstance(eos, list) else {eos}


class TransformersChatModel(BaseChatModel):
    """A local causal LM as a LangChain chat model with tool calling (see the module docstring).

    Copies made by `bind_tools` share the weights and one lock: generation is serialized per loaded model, since
    concurrent `generate` calls on one model would only compete for the same device.
    """

    model: Any = Field(description="the transformers causal LM (PreTrainedModel), in eval mode on `device`")
    tokenizer: Any = Field(description="its tokenizer (PreTrainedTokenizerBase) with a tool-capable chat template")
    model_id: str = DEFAULT_MODEL_ID
    device: str = "cpu"
    max_new_tokens: int = Field(MAX_NEW_TOKENS, ge=1)
    tools: list[dict[str, Any]] = Field(default_factory=list, description="OpenAI-format tool schemas")
    parallel_tool_calls: bool = True
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "transformers-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "max_new_tokens": self.max_new_tokens}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        parallel_tool_calls: bool | None = None,
        **kwargs: Any,
    ) -> TransformersChatModel:
        """A copy that offers `tools` (LangChain tools, functions, pydantic models or OpenAI schemas) to the model.

        parallel_tool_calls=False keeps only the first call of a turn (the model may still write several).
        tool_choice: only None / "auto" (the model decides); a chat template cannot force a call.
        """
        if tool_choice not in (None, "auto"):
            raise ValueError(f"tool_choice={tool_choice!r} is not supported by a local chat model (only 'auto')")
        if kwargs:
            raise TypeError(f"unsupported bind_tools arguments: {', '.join(sorted(kwargs))}")
        update: dict[str, Any] = {"tools": [convert_to_openai_tool(t) for t in tools]}
        if parallel_tool_calls is not None:
            update["parallel_tool_calls"] = parallel_tool_calls
        return self.model_copy(update=update)

    def render(self, messages: Sequence[BaseMessage]) -> str:
        """The prompt text the model is shown for `messages`, generation prompt included."""
        return self.tokenizer.apply_chat_template(
            chat_messages(messages), tools=self.tools or None, add_generation_prompt=True, tokenize=False
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        inputs = self.tokenizer.apply_chat_template(
            chat_messages(messages),
            tools=self.tools or None,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            # Control tokens typed inside messages (a caption saying "<|im_end|>", a tool result with "<tool_call>")
            # stay plain text: only the template's own markup may end a turn or open a call.
            sanitize_control_tokens=True,
        )
        n_in = int(inputs["input_ids"].shape[1])
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit and n_in + self.max_new_tokens > limit:  # fail clearly: the agent then plans with its built-in policy
            raise ValueError(f"a {n_in}-token prompt plus {self.max_new_tokens} new tokens exceed {self.model_id}'s "
                             f"{limit} positions")  # fmt: skip
        with self._lock:
            new_tokens = self._new_tokens(inputs)
        eos = eos_token_ids(self.model, self.tokenizer)
        end = next((k for k, token in enumerate(new_tokens) if token in eos), None)
        text = self.tokenizer.decode(new_tokens[:end], skip_special_tokens=False)
        for marker in stop or []:
            text = text.split(marker, 1)[0]
        message = parse_completion(text)
        if not self.parallel_tool_calls and len(message.tool_calls) > 1:
            message = message.model_copy(update={"tool_calls": message.tool_calls[:1]})
        n_out = len(new_tokens) if end is None else end + 1  # the end-of-turn token was generated too
        message.usage_metadata = {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
        message.response_metadata = {"model_name": self.model_id, "finish_reason": "length" if end is None else "stop"}
        return ChatResult(generations=[ChatGeneration(message=message)])

    @torch.inference_mode()
    def _new_tokens(self, inputs: Any) -> list[int]:
        """Greedy generation: the ids the model wrote after the prompt (through end of turn, or max_new_tokens)."""
        inputs = inputs.to(self.device)
        pad = self.tokenizer.pad_token_id
        generated = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,  # greedy, whatever sampling defaults the checkpoint's generation_config carries
            pad_token_id=self.tokenizer.eos_token_id if pad is None else pad,
        )
        return generated[0, inputs["input_ids"].shape[1] :].cpu().tolist()


# --- loading ----------------------------------------------------------------------------------------------------


def tiny_tokenizer() -> PreTrainedTokenizerBase:
    """The in-memory byte-level Qwen2 tokenizer of the tiny face: ChatML and tool-call markers as single tokens,
    and QWEN2_5_TOOL_TEMPLATE."""
    tokenizer = qwen2_byte_tokenizer(specials=[TOOL_CALL_OPEN, TOOL_CALL_CLOSE])
    tokenizer.chat_template = QWEN2_5_TOOL_TEMPLATE
    return tokenizer


def tiny_config(tokenizer: PreTrainedTokenizerBase) -> Qwen2Config:
    """A 2-layer, 32-wide Qwen2 decoder over the tokenizer's vocabulary. Byte-level text makes the planner's first
    prompt (system prompt plus eight tool schemas) about 5k tokens, so positions go well past that."""
    return Qwen2Config(**tiny_qwen2_text(tokenizer, max_position_embeddings=32768, bos_token_id=None))


def build_model(spec: ModelSpec, device: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The (model on `device`, tokenizer) of a spec's face.

    real: from_pretrained of the hub id or folder, bfloat16 on accelerators and float32 on CPU unless spec.dtype says
    otherwise; the checkpoint's chat template, or QWEN2_5_TOOL_TEMPLATE when it ships none.
    tiny: `tiny_config`, weights from torch seed 0, float32; `tiny_tokenizer`.
    """
    if spec.face == "real":
        dtype = torch_dtype(spec.dtype, device, torch.bfloat16)
        model = load_pretrained(AutoModelForCausalLM.from_pretrained, spec, dtype=dtype)
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, spec)
        if getattr(tokenizer, "chat_template", None) is None:
            tokenizer.chat_template = QWEN2_5_TOOL_TEMPLATE
        return model.to(device).eval(), tokenizer
    if spec.face == "tiny":
        tokenizer = tiny_tokenizer()
        return seeded_model(Qwen2ForCausalLM, tiny_config(tokenizer)).to(device), tokenizer
    raise InputError(f"the {spec.role} model has no '{spec.face}' face: use real or tiny")


def load_qwen2_chat(spec: ModelSpec, device: str, max_new_tokens: int = MAX_NEW_TOKENS) -> TransformersChatModel:
    """The registry's loader for ("planner", "qwen2_chat"): a face of a Qwen2.5-Instruct-style chat model."""
    model, tokenizer = build_model(spec, device)
    return TransformersChatModel(
        model=model, tokenizer=tokenizer, model_id=spec.model_id, device=device, max_new_tokens=max_new_tokens
    )


def planner_spec(model_id_or_path: str, face: Face = "real", dtype: DType = "auto") -> ModelSpec:
    """The ModelSpec of a local planner chat model; the model id `tiny` means the tiny face."""
    if model_id_or_path == "tiny":
        return ModelSpec(role="planner", family=FAMILY, model_id=f"tiny-{FAMILY}", face="tiny", dtype=dtype)
    return ModelSpec(role="planner", family=FAMILY, model_id=model_id_or_path, face=face, dtype=dtype)


def load_chat_llm(
    model_id_or_path: str = DEFAULT_MODEL_ID,
    face: Face = "real",
    device: str | None = None,
    dtype: DType = "auto",
    max_new_tokens: int = MAX_NEW_TOKENS,
) -> TransformersChatModel:
    """A local chat model with tool calling, outside any registry: hub id or folder (face real), or the tiny face.

    device: cpu | cuda | cuda:N | mps (default: cuda, then mps, then cpu).
    """
    return load_qwen2_chat(planner_spec(model_id_or_path, face, dtype), pick_device(device), max_new_tokens)
