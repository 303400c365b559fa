"""Vision-language models (VLMs) that judge overlays: one `judge(images, messages) -> (text, Usage)` per call.

Two adapters with the same face:
- `TransformersVlmCritic`: Qwen2.5-VL (3B or 7B Instruct) run locally through its processor's chat template and a
  greedy `generate`.
- `OpenAIVlmCritic`: any langchain chat model that takes OpenAI-style image_url content parts (OpenAI, vLLM,
  Ollama, llama.cpp server), images sent as base64 PNG data URLs.

Both bound what one call costs: at most `max_images` images (default 4; more is a caller error, since the prompt
names each image), each downscaled so its longer side is <= `max_side` pixels (default 448: about 256 visual tokens
for Qwen2.5-VL, one 512-px tile for OpenAI). The images go into the first user message, before its text (the order
the Qwen2.5-VL model card uses); the text is used as rendered (prompts/critique.py) and parsed by the caller.

Faces of Qwen2.5-VL (see ModelSpec): `real` loads Qwen/Qwen2.5-VL-3B-Instruct, -7B-Instruct or a local folder;
`tiny` builds a seeded 2-layer model with an in-memory processor (Qwen2VLImageProcessor + byte-level tokenizer
with the vision tokens + a Qwen2.5-VL-style chat template); `random` builds the real 3B architecture with random
weights and that processor (GPU cost measurement; outputs are meaningless bytes).
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from PIL import Image
from transformers import (
    AutoProcessor,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)

from prompts.translate import PromptMessage
from tools.chat_call import invoke_chat
from tools.models.base import ModelSpec, Usage
from tools.models.registry import load_pretrained, torch_dtype
from tools.models.tiny_text import qwen2_byte_tokenizer, seeded_model, tiny_qwen2_text

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = [
    "DEFAULT_MAX_IMAGES",
    "MAX_IMAGE_SIDE",
    "QWEN2_5_VL_3B",
    "QWEN2_5_VL_7B",
    "OpenAIVlmCritic",
    "TransformersVlmCritic",
    "bounded_image",
    "build_model",
    "load_qwen2_5_vl",
    "png_data_url",
]

QWEN2_5_VL_3B = "Qwen/Qwen2.5-VL-3B-Instruct"
QWEN2_5_VL_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
DEFAULT_MAX_IMAGES = 4
MAX_IMAGE_SIDE = 448  # px, longer side; a multiple of Qwen2.5-VL's 28-px merged patch
MAX_NEW_TOKENS = 160  # a verdict object with a 300-character suggestion is about 100-130 BPE tokens


def bounded_image(image: Image.Image, max_side: int = MAX_IMAGE_SIDE) -> Image.Image:
    """An RGB copy of `image` whose longer side is <= max_side px, aspect ratio kept (never upscaled)."""
    out = image.convert("RGB")  # convert() copies, so thumbnail() below never touches the caller's image
    if max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


def png_data_url(image: Image.Image) -> str:
    """`data:image/png;base64,...` of an image (lossless: mask outlines stay sharp)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _check_image_count(images: Sequence[Image.Image], max_images: int) -> None:
    if len(images) > max_images:
        raise ValueError(f"{len(images)} images given to a critic that takes at most {max_images} per call")


def _first_user(messages: Sequence[PromptMessage]) -> int:
    """Index of the message the images belong to."""
    for k, message in enumerate(messages):
        if message.role == "user":
            return k
    raise ValueError("a critique conversation needs a user message")


# ------------------------------------------------------------------------------------------------ transformers


def chatml_vision_template() -> str:
    """Qwen2.5-VL's chat template (Jinja), minus video: each image item becomes
    `<|vision_start|><|image_pad|><|vision_end|>`, which the processor expands to the image's visual tokens.

    Used by the tiny/random faces and for real checkpoints that ship no template. A conversation without a system
    message gets "You are a helpful assistant." as Qwen's templates do.
    """
    return (
        "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}"
        "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
        "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


class TransformersVlmCritic:
    """A local Qwen2.5-VL answering one critique conversation per `judge` call, greedily."""

    def __init__(
        self,
        spec: ModelSpec,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        device: str,
        max_images: int = DEFAULT_MAX_IMAGES,
        max_side: int = MAX_IMAGE_SIDE,
        max_new_tokens: int = MAX_NEW_TOKENS,
    ) -> None:
        self.spec = spec
        self.model_id = spec.model_id
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.max_images = max_images
        self.max_side = max_side
        self.max_new_tokens = max_new_tokens
        tokenizer = processor.tokenizer
        self._pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self._eos_ids: set[int] = set(eos) if isinstance(eos, list) else {eos}
        # Markup tokens the tokenizer matches inside plain text ("<|image_pad|>", "<|im_end|>", ...): a typed one
        # would count as an image placeholder or end a turn, so message texts are stripped of them.
        markup = sorted((t for t in tokenizer.get_added_vocab() if t.startswith("<") and t.endswith(">")), key=len)
        self._markup_re = re.compile("|".join(map(re.escape, reversed(markup)))) if markup else None

    @torch.inference_mode()
    def judge(self, images: Sequence[Image.Image], messages: Sequence[PromptMessage]) -> tuple[str, Usage]:
        """The model's answer to `messages` with `images` (<= max_images) before the first user message's text.

        Usage: prompt tokens (visual tokens included) and generated tokens through the first end-of-turn token.
        """
        _check_image_count(images, self.max_images)
        inputs = self.processor.apply_chat_template(
            [self._conversation(images, messages)],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        inputs = inputs.to(self.device, dtype=self.model.dtype)  # floats (pixels) take the model's dtype
        prompt_len = inputs["input_ids"].shape[1]
        generated = self.model.generate(
            **inputs,
            max_new_tokens=self.max_new_tokens,
            do_sample=False,  # greedy, whatever sampling defaults the checkpoint's generation_config carries
            pad_token_id=self._pad_id,
        )
        new_tokens = generated[0, prompt_len:].cpu().tolist()
        text = self.processor.decode(new_tokens, skip_special_tokens=True).strip()
        ends = [k for k, token in enumerate(new_tokens) if token in self._eos_ids]
        return text, Usage(
            input_tokens=int(inputs["attention_mask"].sum()), output_tokens=ends[0] + 1 if ends else len(new_tokens)
        )

    def _conversation(self, images: Sequence[Image.Image], messages: Sequence[PromptMessage]) -> list[dict[str, Any]]:
        with_images = _first_user(messages)
        conversation = []
        for k, message in enumerate(messages):
            content: list[dict[str, Any]] = []
            if k == with_images:
                content += [{"type": "image", "image": bounded_image(image, self.max_side)} for image in images]
            content.append({"type": "text", "text": self._plain(message.content)})
            conversation.append({"role": message.role, "content": content})
        return conversation

    def _plain(self, text: str) -> str:
        return self._markup_re.sub("", text) if self._markup_re else text


def vl_processor() -> Qwen2_5_VLProcessor:
    """The in-memory processor of the tiny and random faces: Qwen2.5-VL's image processing (14-px patches merged
    2x2, CLIP normalisation, the real min/max pixel defaults), a byte-level tokenizer carrying Qwen's vision
    tokens by their real names, and `chatml_vision_template`."""
    tokenizer = qwen2_byte_tokenizer(
        image_token="<|image_pad|>",
        video_token="<|video_pad|>",
        vision_bos_token="<|vision_start|>",
        vision_eos_token="<|vision_end|>",
    )
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=chatml_vision_template(),
    )


def _token_ids(processor: ProcessorMixin) -> dict[str, int]:
    tok = processor.tokenizer
    return {
        "image_token_id": tok.image_token_id,
        "video_token_id": tok.video_token_id,
        "vision_start_token_id": tok.vision_bos_token_id,
        "vision_end_token_id": tok.vision_eos_token_id,
    }


def tiny_config(processor: ProcessorMixin) -> Qwen2_5_VLConfig:
    """2 text layers 32 wide, a 2-block 32-wide ViT (one windowed, one full attention) over the processor's vocab."""
    tok = processor.tokenizer
    # Multimodal RoPE: the (temporal, height, width) sections split head_dim/2 = 4 frequency pairs.
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]}
    # Byte-level text: the critique prompt is about 3-4k tokens.
    text = tiny_qwen2_text(tok, max_position_embeddings=8192, rope_parameters=rope, bos_token_id=None)
    vision = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32}
    return Qwen2_5_VLConfig(
        text_config=text, vision_config={**vision, "fullatt_block_indexes": [1]}, **_token_ids(processor)
    )


def random_config(processor: ProcessorMixin) -> Qwen2_5_VLConfig:
    """Qwen/Qwen2.5-VL-3B-Instruct's config.json: a 32-block 1280-wide ViT (FFN 3420, 16 heads, 112-px windows,
    full attention in blocks 7/15/23/31) merged into a Qwen2.5-3B decoder (2048 wide, 36 layers, 16 heads with
    2 KV heads, FFN 11008, vocab 151936, tied embeddings, M-RoPE sections 16/24/24, theta 1e6, 128000 positions)."""
    tok = processor.tokenizer
    text = {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "bos_token_id": None,
        "pad_token_id": tok.pad_token_id,
        "eos_token_id": tok.eos_token_id,
    }
    vision = {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "window_size": 112,
        "tokens_per_second": 2,
        "fullatt_block_indexes": [7, 15, 23, 31],
    }
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True, **_token_ids(processor))


def build_model(spec: ModelSpec, device: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    """The (model on `device`, processor) of a spec's face.

    real: `from_pretrained` of the hub id or folder, bfloat16 on accelerators and float32 on CPU unless spec.dtype
    says otherwise; the checkpoint's chat template, or `chatml_vision_template` when it ships none.
    tiny: `tiny_config`, weights from torch seed 0, float32; in-memory processor (`vl_processor`).
    random: `random_config` (the 3B checkpoint's hyperparameters) allocated directly on `device`, bfloat16 unless
    spec.dtype says otherwise: about 7.5 GB, for GPU cost measurement. Its byte-level tokenizer writes about 3x
    as many text tokens as the real vocabulary; the visual tokens are the real count.
    """
    if spec.face == "real":
        model = load_pretrained(
            Qwen2_5_VLForConditionalGeneration.from_pretrained,
            spec,
            dtype=torch_dtype(spec.dtype, device, torch.bfloat16),
        )
        processor = load_pretrained(AutoProcessor.from_pretrained, spec)
        if getattr(processor, "chat_template", None) is None:
            processor.chat_template = chatml_vision_template()
        return model.to(device), processor
    processor = vl_processor()
    if spec.face == "tiny":
        return seeded_model(Qwen2_5_VLForConditionalGeneration, tiny_config(processor)).to(device), processor
    dtype = torch.bfloat16 if spec.dtype == "auto" else torch_dtype(spec.dtype, device)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(random_config(processor), dtype=dtype)
    return model.eval(), processor


def load_qwen2_5_vl(spec: ModelSpec, device: str) -> TransformersVlmCritic:
    """Qwen2.5-VL-3B/7B-Instruct (hub ids QWEN2_5_VL_3B / QWEN2_5_VL_7B, or a local folder) or a face of its
    architecture, as a critic."""
    model, processor = build_model(spec, device)
    return TransformersVlmCritic(spec, model, processor, device)


# ----------------------------------------------------------------------------------------------------- OpenAI


class OpenAIVlmCritic:
    """A langchain chat model with vision as a critic: images as base64 PNG image_url parts.

    Transport retries (429, 5xx, timeouts) are the chat model's client's (tools.translate.build_chat_model sets
    them); an API error that survives them becomes a ModelUnavailableError naming the model.
    """

    def __init__(
        self, chat_model: BaseChatModel, max_images: int = DEFAULT_MAX_IMAGES, max_side: int = MAX_IMAGE_SIDE
    ) -> None:
        self.chat_model = chat_model
        self.max_images = max_images
        self.max_side = max_side
        self.model_id = next(
            (
                v
                for a in ("model_name", "model", "model_id")
                if isinstance(v := getattr(chat_model, a, None), str) and v
            ),
            type(chat_model).__name__,
        )

    def judge(self, images: Sequence[Image.Image], messages: Sequence[PromptMessage]) -> tuple[str, Usage]:
        """The chat model's answer; Usage from the response's usage metadata (0 when the server sends none)."""
        _check_image_count(images, self.max_images)
        response = invoke_chat(self.chat_model, self._conversation(images, messages), f"critic VLM {self.model_id}")
        usage = response.usage_metadata or {}
        return response.text, Usage(usage.get("input_tokens", 0), usage.get("output_tokens", 0))

    def _conversation(self, images: Sequence[Image.Image], messages: Sequence[PromptMessage]) -> list[BaseMessage]:
        with_images = _first_user(messages)
        out: list[BaseMessage] = []
        for k, message in enumerate(messages):
            if message.role == "system":
                out.append(SystemMessage(content=message.content))
            elif message.role == "assistant":
                out.append(AIMessage(content=message.content))
            elif k == with_images:
                parts: list[str | dict] = [
                    {"type": "image_url", "image_url": {"url": png_data_url(bounded_image(image, self.max_side))}}
                    for image in images
                ]
                out.append(HumanMessage(content=[*parts, {"type": "text", "text": message.content}]))
            else:
                out.append(HumanMessage(content=message.content))
        return out
