"""In-memory tokenizers, feature extractors and seeded models for the `tiny` model faces: no files, no hub.

Byte-level BPE with no merges: the vocabulary is the 256 GPT-2 byte symbols (every UTF-8 string encodes, one token
per byte) plus the special tokens a model's processor looks up by name. Ids are stable: specials placed first take
ids 0..k-1, the bytes come next, specials placed last follow the bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import torch
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Tokenizer,
    RobertaTokenizer,
    WhisperFeatureExtractor,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

# Specials of the Qwen2 chat family (Qwen2-Audio, Audio Flamingo 3's Qwen2.5 LLM, Qwen2.5-Omni).
QWEN_CHAT_SPECIALS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


@cache
def byte_symbols() -> tuple[str, ...]:
    """The 256 printable stand-ins GPT-2's byte-level BPE uses for the bytes 0..255, in byte order."""
    table = bytes_to_unicode()
    return tuple(table[b] for b in range(256))


def byte_level_vocab(first: Sequence[str] = (), last: Sequence[str] = ()) -> dict[str, int]:
    """token -> id: `first` specials at 0..len(first)-1, then the 256 byte symbols, then `last` specials."""
    tokens = [*first, *byte_symbols(), *last]
    if len(set(tokens)) != len(tokens):
        raise ValueError("special tokens repeat or collide with byte symbols")
    return {token: i for i, token in enumerate(tokens)}


def qwen2_byte_tokenizer(specials: Sequence[str] = (), **named_tokens: str) -> Qwen2Tokenizer:
    """A Qwen2 tokenizer (byte-level BPE, no merges) over bytes + QWEN_CHAT_SPECIALS + `specials`.

    named_tokens: model-specific names a processor reads off the tokenizer, e.g. audio_token="<|AUDIO|>"
    (they become `tokenizer.audio_token` / `tokenizer.audio_token_id`); their values are added to the vocabulary.
    Padding is on the left: generation appends to the right end of every row.
    """
    last = list(dict.fromkeys([*QWEN_CHAT_SPECIALS, *specials, *named_tokens.values()]))
    tokenizer = Qwen2Tokenizer(
        vocab=byte_level_vocab(last=last),
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=[t for t in last if t not in {"<|endoftext|>", "<|im_end|>"}],
        padding_side="left",
        **named_tokens,
    )
    return tokenizer


def roberta_byte_tokenizer() -> RobertaTokenizer:
    """A RoBERTa tokenizer (CLAP's text side) with its specials first: <s>=0, <pad>=1, </s>=2, <unk>=3, <mask>=4.

    Specials first keeps pad_token_id small, which the text model's position ids assume (pad id 1 as in RoBERTa).
    """
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    return RobertaTokenizer(vocab=byte_level_vocab(first=specials), merges=[])


def whisper_features(num_mel_bins: int = 128, sampling_rate: int = 16000) -> WhisperFeatureExtractor:
    """Whisper log-mel features: 25 ms window, 10 ms hop, padded/cut to 30 s (3000 frames) as the real ALMs use."""
    return WhisperFeatureExtractor(feature_size=num_mel_bins, sampling_rate=sampling_rate, return_attention_mask=True)


def seeded_model(model_class: type[PreTrainedModel], config: PretrainedConfig) -> PreTrainedModel:
    """A float32 `model_class(config)` with weights drawn after torch.manual_seed(0), in eval mode.

    The caller's RNG state is left as it was, so building a tiny model does not shift other seeded code.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return model_class._from_config(config, dtype=torch.float32).eval()


def tiny_qwen2_text(tokenizer: PreTrainedTokenizerBase, **overrides: Any) -> dict[str, Any]:
    """Config values of a 2-layer, 32-wide Qwen2-style decoder over the tokenizer's vocabulary (the text part of
    every tiny chat model here: captioners, critic, planner); `overrides` adds or replaces keys."""
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    return text | overrides
