"""Audio-language models (ALMs) as AudioCaptioners: Qwen2-Audio, Audio Flamingo 3, Qwen2.5-Omni's thinker.

One generic adapter, `ChatAudioCaptioner`, serves all three: every (window, query) pair becomes one chat
conversation (audio first, then the query text), rendered by the processor's chat template, batched with left
padding into greedy `generate` calls, and only the new tokens are decoded. An `AlmFamily` names what differs.

Faces (see ModelSpec): `real` loads a hub id or local folder; `tiny` builds a seeded random model of the same
architecture with an in-memory processor (tests, offline runs); `random` builds the real-size architecture with
random weights and the same in-memory processor (GPU cost measurement; outputs are meaningless bytes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    AutoProcessor,
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5OmniProcessor,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
    StaticCache,
)

from tools.errors import InputError
from tools.models.base import CaptionBatch, ModelSpec, Usage
from tools.models.registry import load_pretrained, torch_dtype
from tools.models.tiny_text import qwen2_byte_tokenizer, seeded_model, tiny_qwen2_text, whisper_features

# The three text queries of Pengi's describe(), used by the paper (PAPER.md §1).
PAPER_QUERIES: tuple[str, ...] = ("generate audio caption", "generate metadata", "this is a sound of")

GENERATE_BATCH_SIZE = 8  # (window, query) conversations per generate call; bounds activation memory

OMNI_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory "
    "and visual inputs, as well as generating text and speech."
)  # the system prompt Qwen2.5-Omni was trained with (model card); text-only answers do not require it


def chatml_audio_template(audio_markup: str) -> str:
    """A ChatML chat template (Jinja) that writes each audio item of a message as `audio_markup`.

    Used by the tiny/random faces and for real checkpoints that ship no template. A conversation without a system
    message gets "You are a helpful assistant." as the Qwen chat templates do.
    """
    return (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
        "{% for c in m['content'] %}"
        "{% if c['type'] == 'audio' %}" + audio_markup + "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
        "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


@dataclass(frozen=True)
class AlmFamily:
    """What differs between ALM families; everything else is ChatAudioCaptioner.

    processor: builds the in-memory processor of the tiny and random faces (byte-level tokenizer).
    tiny_config / random_config: the architecture config, given that processor (special-token ids come from it).
    audio_markup: how the fallback chat template writes one audio item.
    system_prompt: a system message put before every conversation, or None for the template's default.
    """

    name: str
    hub_id: str  # the checkpoint users run
    model_class: type[PreTrainedModel]
    audio_markup: str
    processor: Callable[[], ProcessorMixin]
    tiny_config: Callable[[ProcessorMixin], PretrainedConfig]
    random_config: Callable[[ProcessorMixin], PretrainedConfig]
    system_prompt: str | None = None


class ChatAudioCaptioner:
    """An AudioCaptioner over any chat ALM whose processor takes audio inside chat messages.

    describe() runs n windows x q queries as n*q conversations, GENERATE_BATCH_SIZE per greedy generate call.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: PreTrainedModel,
        processor: ProcessorMixin,
        device: str,
        system_prompt: str | None = None,
        batch_size: int = GENERATE_BATCH_SIZE,
    ) -> None:
        self.spec = spec
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.system_prompt = system_prompt
        self.batch_size = batch_size
        self.sampling_rate: int = int(processor.feature_extractor.sampling_rate)
        tokenizer = processor.tokenizer
        self._pad_id: int = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        eos = model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self._eos_ids: set[int] = set(eos) if isinstance(eos, list) else {eos}
        # The tokenizer's added markup tokens ("<|AUDIO|>", "<sound>", "<|im_end|>", ...), longest first so that none
        # is left half-removed by a shorter one it contains.
        markup = [t for t in tokenizer.get_added_vocab() if t.startswith("<") and t.endswith(">")]
        self._control_tokens = sorted(markup, key=len, reverse=True)
        self._static_caches: dict[int, StaticCache] = {}  # by batch size; touched on the decoding thread only
        # torch keeps CUDA graph trees per thread: compiled decoding called from a new thread would record its
        # graphs again, into a memory pool of its own. And callers do change threads: LangGraph's ToolNode runs each
        # of the agent's tool steps on a fresh pool thread, chat turns and benchmark workers have their own. One
        # thread owns the decoding.
        self._decoding_thread = ThreadPoolExecutor(1, thread_name_prefix="captioner-decoding") if spec.compile else None

    def describe(self, windows: np.ndarray, queries: Sequence[str], max_new_tokens: int = 48) -> CaptionBatch:
        """windows: float32 (n, samples) mono in [-1, 1] at `sampling_rate` Hz; returns n x len(queries) answers.

        Usage counts prompt tokens (audio placeholders included, padding excluded) and generated tokens up to and
        including the first end-of-sequence token.
        """
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or (windows.shape[0] and not windows.shape[1]):
            raise InputError(f"audio windows must be a non-empty 2-D (n, samples) array, got shape {windows.shape}")
        pairs = [(i, j) for i in range(windows.shape[0]) for j in range(len(queries))]
        texts: list[list[str]] = [[""] * len(queries) for _ in range(windows.shape[0])]
        input_tokens = output_tokens = 0
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start : start + self.batch_size]
            batch = [(windows[i], queries[j]) for i, j in chunk]
            if self._decoding_thread is None:
                answers, n_in, n_out = self._generate(batch, max_new_tokens)
            else:
                answers, n_in, n_out = self._decoding_thread.submit(self._generate, batch, max_new_tokens).result()
            for (i, j), answer in zip(chunk, answers, strict=True):
                texts[i][j] = answer
            input_tokens += n_in
            output_tokens += n_out
        return CaptionBatch(texts=texts, usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens))

    def _conversation(self, audio: np.ndarray, query: str) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        if self.system_prompt:
            messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        # Audio before text: the order the Qwen2-Audio and AF3 model cards use.
        content = [{"type": "audio", "audio": audio}, {"type": "text", "text": self._plain(query)}]
        messages.append({"role": "user", "content": content})
        return messages

    def _plain(self, query: str) -> str:
        """The query without the tokenizer's control tokens: a typed "<|AUDIO|>" would otherwise count as an audio
        placeholder and break the processor (transformers' sanitize_control_tokens misses Qwen2.5-Omni)."""
        for token in self._control_tokens:
            query = query.replace(token, "")
        return query

    @torch.inference_mode()
    def _generate(self, pairs: list[tuple[np.ndarray, str]], max_new_tokens: int) -> tuple[list[str], int, int]:
        """One batched greedy generate; returns (answers, prompt tokens, generated tokens)."""
        inputs = self.processor.apply_chat_template(
            [self._conversation(audio, query) for audio, query in pairs],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            # Padding is for the text only: a bare `padding` would also reach the feature extractor and stop it
            # padding every window to the 30 s the audio encoders expect. The log-mel features of those 30 s
            # windows are computed on the model's device: on the host CPU 5 windows cost 60-185 ms in a run on 2
            # cores, sharing them with the frames decoding beside the captioner (32 ms alone).
            processor_kwargs={
                "text_kwargs": {"padding": True, "padding_side": "left"},
                "audio_kwargs": {"device": self.device},
                "return_tensors": "pt",
            },
        )
        # Float tensors (audio features) take the model's dtype; integer ids and masks only move.
        inputs = inputs.to(self.device, dtype=self.model.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        generated = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,  # greedy, whatever sampling defaults the checkpoint's generation_config carries
            pad_token_id=self._pad_id,
            **self._decoding_cache(prompt_len + max_new_tokens, len(pairs)),
        )
        new_tokens = generated[:, prompt_len:].cpu()
        answers = [text.strip() for text in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]
        return answers, int(inputs["attention_mask"].sum()), sum(self._generated_length(row) for row in new_tokens)

    def _decoding_cache(self, length: int, batch_size: int) -> dict[str, StaticCache]:
        """generate's cache argument for `batch_size` sequences of up to `length` tokens: none (a dynamic cache)
        unless spec.compile, then a StaticCache kept per batch size and reset before each call (calls take turns on
        the decoding thread, so one cache serves them all).

        A static cache has fixed shapes, so transformers compiles the decoding step (CUDA graphs on a GPU): the step
        is launch-bound for a 7B model at these batch sizes. Keeping the cache keeps its tensors at the same
        addresses, which the recorded CUDA graph reads; the fresh cache that `cache_implementation="static"` makes
        on every call has torch record the graph again each time. The cache grows to the longest prompt seen
        (a new length compiles again) and holds batch x layers x 2 x heads x length x head size values: ~0.3 GB for
        Qwen2-Audio-7B at 5 sequences of 230 tokens.
        """
        if not self.spec.compile:
            return {}
        cache = self._static_caches.get(batch_size)
        if cache is None or cache.get_max_length() < length:
            config = self.model.config.get_text_config(decoder=True)
            cache = self._static_caches[batch_size] = StaticCache(config=config, max_cache_len=length)
        else:
            cache.reset()
        return {"cache": cache}

    def _generated_length(self, row: torch.Tensor) -> int:
        """Tokens a row really generated: through its first end-of-sequence token (the rest is padding)."""
        for k, token in enumerate(row.tolist()):
            if token in self._eos_ids:
                return k + 1
        return len(row)


# --- tiny and random builds -------------------------------------------------------------------------------------


# The input side of every audio encoder here, tiny ones included: 128 mel bins and 1500 positions, because the
# processors pad each window to 30 s (3000 frames -> 1500 positions after the stride-2 conv). The real checkpoints'
# encoders are Whisper-large-v3 sized (32 layers, width 1280, 20 heads, FFN 5120); the tiny ones 1 layer, width 32.
_WHISPER_INPUT = {"num_mel_bins": 128, "max_source_positions": 1500}


def _qwen2_audio_processor() -> ProcessorMixin:
    tok = qwen2_byte_tokenizer(
        audio_token="<|AUDIO|>", audio_bos_token="<|audio_bos|>", audio_eos_token="<|audio_eos|>"
    )
    template = chatml_audio_template("Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n")
    return Qwen2AudioProcessor(feature_extractor=whisper_features(128), tokenizer=tok, chat_template=template)


def _qwen2_audio_tiny(processor: ProcessorMixin) -> PretrainedConfig:
    audio = {"d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}
    return Qwen2AudioConfig(
        audio_config={"model_type": "qwen2_audio_encoder", **_WHISPER_INPUT, **audio},
        text_config={"model_type": "qwen2", **tiny_qwen2_text(processor.tokenizer)},
        audio_token_index=processor.audio_token_id,
    )


def _qwen2_audio_random(processor: ProcessorMixin) -> PretrainedConfig:
    """Qwen/Qwen2-Audio-7B-Instruct's config.json: Whisper-large-v3 encoder + a Qwen-7B decoder (4096 wide,
    32 layers, 32 heads without GQA, FFN 11008, vocab 156032, RoPE theta 1e4, RMSNorm eps 1e-5, 8192 positions)."""
    audio = {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120}
    text = {
        "model_type": "qwen2",
        "vocab_size": 156032,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "tie_word_embeddings": False,
        "pad_token_id": processor.tokenizer.pad_token_id,
        "eos_token_id": processor.tokenizer.eos_token_id,
    }
    return Qwen2AudioConfig(
        audio_config={"model_type": "qwen2_audio_encoder", **_WHISPER_INPUT, **audio},
        text_config=text,
        audio_token_index=processor.audio_token_id,
    )


def _af3_processor() -> ProcessorMixin:
    tok = qwen2_byte_tokenizer(specials=["<sound>"])
    return AudioFlamingo3Processor(
        feature_extractor=whisper_features(128), tokenizer=tok, chat_template=chatml_audio_template("<sound>")
    )


def _af3_tiny(processor: ProcessorMixin) -> PretrainedConfig:
    audio = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    return AudioFlamingo3Config(
        audio_config={"model_type": "audioflamingo3_encoder", **_WHISPER_INPUT, **audio},
        text_config={"model_type": "qwen2", **tiny_qwen2_text(processor.tokenizer)},
        audio_token_id=processor.audio_token_id,
    )


def _af3_random(processor: ProcessorMixin) -> PretrainedConfig:
    """nvidia/audio-flamingo-3-hf, as written by transformers' convert_audioflamingo3_to_hf.py: Whisper-large-v3
    encoder, GELU MLP projector, Qwen2.5-7B decoder (3584 wide, 28 layers, 28 heads with 4 KV heads, FFN 18944,
    RoPE theta 1e6); vocab = len(tokenizer) = 151672 (Qwen2.5's 151665 + AF3's <sound> at 151669 and neighbours)."""
    audio = {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 20, "intermediate_size": 5120}
    text = {
        "model_type": "qwen2",
        "vocab_size": 151672,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
        "tie_word_embeddings": False,
        "pad_token_id": processor.tokenizer.pad_token_id,
        "eos_token_id": processor.tokenizer.eos_token_id,
    }
    return AudioFlamingo3Config(
        audio_config={"model_type": "audioflamingo3_encoder", **_WHISPER_INPUT, **audio},
        text_config=text,
        audio_token_id=processor.audio_token_id,
    )


def _omni_processor() -> ProcessorMixin:
    tok = qwen2_byte_tokenizer(
        audio_token="<|AUDIO|>",
        audio_bos_token="<|audio_bos|>",
        audio_eos_token="<|audio_eos|>",
        image_token="<|IMAGE|>",
        video_token="<|VIDEO|>",
        vision_bos_token="<|vision_bos|>",
        vision_eos_token="<|vision_eos|>",
    )
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessor(),
        video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=whisper_features(128),
        tokenizer=tok,
        chat_template=chatml_audio_template("<|audio_bos|><|AUDIO|><|audio_eos|>"),
    )


def _omni_token_ids(processor: ProcessorMixin) -> dict[str, int]:
    tok = processor.tokenizer
    return {
        "audio_token_index": tok.audio_token_id,
        "image_token_index": tok.image_token_id,
        "video_token_index": tok.video_token_id,
        "audio_start_token_id": tok.audio_bos_token_id,
        "audio_end_token_id": tok.audio_eos_token_id,
        "vision_start_token_id": tok.vision_bos_token_id,
    }


def _omni_tiny(processor: ProcessorMixin) -> PretrainedConfig:
    audio = {"d_model": 32, "encoder_layers": 1, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}
    vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32}
    # Multimodal RoPE: the (temporal, height, width) sections split head_dim/2 = 4 frequency pairs.
    rope = {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 1, 1]}
    return Qwen2_5OmniThinkerConfig(
        audio_config={**_WHISPER_INPUT, **audio, "n_window": 100, "output_dim": 32},
        vision_config={**vision, "fullatt_block_indexes": [0]},
        text_config=tiny_qwen2_text(processor.tokenizer, rope_parameters=rope, tie_word_embeddings=False),
        **_omni_token_ids(processor),
    )


def _omni_random(processor: ProcessorMixin) -> PretrainedConfig:
    """Qwen/Qwen2.5-Omni-7B's thinker_config: Whisper-large-v3-sized audio encoder projecting to 3584, a 32-block
    1280-wide ViT (FFN 3420, 16 heads, full attention in blocks 7/15/23/31), and the Qwen2.5-7B decoder
    (3584 wide, 28 layers, 28 heads with 4 KV heads, FFN 18944, vocab 152064, M-RoPE sections 16/24/24, theta 1e6).
    The talker and token2wav (speech output) are not built."""
    audio = {"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120}
    vision = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 3584}
    text = {
        "vocab_size": 152064,
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        "tie_word_embeddings": False,
        "pad_token_id": processor.tokenizer.pad_token_id,
        "eos_token_id": processor.tokenizer.eos_token_id,
    }
    return Qwen2_5OmniThinkerConfig(
        audio_config={**_WHISPER_INPUT, **audio, "n_window": 100, "output_dim": 3584},
        vision_config={**vision, "fullatt_block_indexes": [7, 15, 23, 31]},
        text_config=text,
        **_omni_token_ids(processor),
    )


QWEN2_AUDIO = AlmFamily(
    name="qwen2_audio",
    hub_id="Qwen/Qwen2-Audio-7B-Instruct",
    model_class=Qwen2AudioForConditionalGeneration,
    audio_markup="Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n",
    processor=_qwen2_audio_processor,
    tiny_config=_qwen2_audio_tiny,
    random_config=_qwen2_audio_random,
)
AUDIO_FLAMINGO3 = AlmFamily(
    name="audio_flamingo3",
    hub_id="nvidia/audio-flamingo-3-hf",
    model_class=AudioFlamingo3ForConditionalGeneration,
    audio_markup="<sound>",
    processor=_af3_processor,
    tiny_config=_af3_tiny,
    random_config=_af3_random,
)
QWEN2_5_OMNI = AlmFamily(
    name="qwen2_5_omni",
    hub_id="Qwen/Qwen2.5-Omni-7B",
    # Thinker only: it loads from the full Omni checkpoint (transformers drops the "thinker." prefix and picks
    # thinker_config); the talker, whose generate needs a speaker file, is never built.
    model_class=Qwen2_5OmniThinkerForConditionalGeneration,
    audio_markup="<|audio_bos|><|AUDIO|><|audio_eos|>",
    processor=_omni_processor,
    tiny_config=_omni_tiny,
    random_config=_omni_random,
    system_prompt=OMNI_SYSTEM_PROMPT,
)


def build_model(family: AlmFamily, spec: ModelSpec, device: str) -> tuple[PreTrainedModel, ProcessorMixin]:
    """The (model on `device`, processor) of a spec's face.

    real: `from_pretrained` of the hub id or folder, bfloat16 on accelerators and float32 on CPU unless spec.dtype
    says otherwise; the checkpoint's chat template, or `chatml_audio_template` when it ships none.
    tiny: `family.tiny_config`, weights from torch seed 0, float32; in-memory processor.
    random: `family.random_config` (the real checkpoint's hyperparameters) with random weights allocated directly on
    `device`, bfloat16 unless spec.dtype says otherwise: about 16-18 GB, meant for GPU cost measurement (on CPU it
    needs that much RAM and minutes per answer). Its in-memory byte-level tokenizer writes about 3x as many text
    tokens as the real BPE vocabulary; the audio placeholders, which dominate the prompt, are the real count.
    """
    if spec.face == "real":
        dtype = torch_dtype(spec.dtype, device, torch.bfloat16)
        model = load_pretrained(family.model_class.from_pretrained, spec, dtype=dtype)
        processor = load_pretrained(AutoProcessor.from_pretrained, spec)
        if getattr(processor, "chat_template", None) is None:
            processor.chat_template = chatml_audio_template(family.audio_markup)
        return model.to(device), processor
    processor = family.processor()
    if spec.face == "tiny":
        return seeded_model(family.model_class, family.tiny_config(processor)).to(device), processor
    # random: allocate straight on the device, in bfloat16 unless asked otherwise (a 7B model is 16 GB in bf16).
    dtype = torch.bfloat16 if spec.dtype == "auto" else torch_dtype(spec.dtype, device)
    with torch.device(device):
        model = family.model_class._from_config(family.random_config(processor), dtype=dtype)
    return model, processor


def _load(family: AlmFamily, spec: ModelSpec, device: str) -> ChatAudioCaptioner:
    model, processor = build_model(family, spec, device)
    return ChatAudioCaptioner(spec, model, processor, device, system_prompt=family.system_prompt)


def load_qwen2_audio(spec: ModelSpec, device: str) -> ChatAudioCaptioner:
    """Qwen2-Audio-7B-Instruct (hub id Qwen/Qwen2-Audio-7B-Instruct) or a face of its architecture."""
    return _load(QWEN2_AUDIO, spec, device)


def load_audio_flamingo3(spec: ModelSpec, device: str) -> ChatAudioCaptioner:
    """Audio Flamingo 3 (hub id nvidia/audio-flamingo-3-hf) or a face of its architecture."""
    return _load(AUDIO_FLAMINGO3, spec, device)


def load_qwen2_5_omni(spec: ModelSpec, device: str) -> ChatAudioCaptioner:
    """Qwen2.5-Omni-7B's thinker (hub id Qwen/Qwen2.5-Omni-7B), text output only, or a face of its architecture."""
    return _load(QWEN2_5_OMNI, spec, device)


FAMILIES: dict[str, AlmFamily] = {family.name: family for family in (QWEN2_AUDIO, AUDIO_FLAMINGO3, QWEN2_5_OMNI)}
