"""GroundingDINO's BERT text features computed once per caption and reused.

GroundingDinoModel.forward runs its text encoder (BERT-base, 110 M parameters) on every pass, although a clip's
frames and its refine rounds ask the same few captions again and again, and no forward argument takes precomputed
features. `cache_text_features` puts a cache in front of that one module instance's forward (the module, its
parameters and its state dict are untouched, so saving and loading are unaffected): each caption row of a batch is
looked up by its exact inputs (token ids, the model's 4D self-attention mask, token types, positions), only the rows
not seen before go through BERT, in one pass, and the batch's last_hidden_state (B, L, 768) is stacked from the rows.
GroundingDINO reads nothing else of the text encoder's output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from transformers.modeling_outputs import BaseModelOutput

from tools.embedding_cache import CacheStats, LRUCache

DEFAULT_CAPACITY = 32
"""Caption rows kept: a row is (L, 768) float32, 30 kB for a 10-token caption and 0.8 MB at GroundingDINO's longest
(256 tokens), so the cache holds at most ~25 MB."""


class TextFeatureCache:
    """The text encoder's forward with its rows cached; `enabled = False` passes every call straight through."""

    def __init__(self, encode: Callable[..., Any], capacity: int = DEFAULT_CAPACITY) -> None:
        self._encode = encode
        self._rows: LRUCache[bytes, torch.Tensor] = LRUCache(capacity)
        self.enabled = True

    @property
    def stats(self) -> CacheStats:
        """Row lookups that found features (hits) and rows encoded (misses)."""
        return self._rows.stats

    def clear(self) -> None:
        self._rows.clear()

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_dict: bool | None = True,
        **kwargs: Any,
    ) -> Any:
        inputs = (input_ids, attention_mask, token_type_ids, position_ids)
        if not self.enabled or kwargs or any(t is None for t in inputs):
            return self._encode(*inputs, return_dict=return_dict, **kwargs)
        on_cpu = tuple(t.detach().cpu() for t in inputs)  # one copy per tensor, not one per row
        keys = [_row_key(on_cpu, i) for i in range(len(input_ids))]
        first_row: dict[bytes, int] = {}
        for i, key in enumerate(keys):
            first_row.setdefault(key, i)
        features = {key: self._rows.get(key) for key in first_row}
        missing = [key for key, value in features.items() if value is None]
        if missing:
            rows = torch.tensor([first_row[key] for key in missing], device=input_ids.device)
            encoded = self._encode(*(t.index_select(0, rows) for t in inputs), return_dict=True).last_hidden_state
            for key, row in zip(missing, encoded, strict=True):
                features[key] = row.clone()  # a row slice would keep the whole batch alive in the cache
                self._rows.put(key, features[key])
        hidden = torch.stack([features[key] for key in keys])
        return BaseModelOutput(last_hidden_state=hidden) if return_dict is not False else (hidden,)


def _row_key(inputs: tuple[torch.Tensor, ...], row: int) -> bytes:
    """A digest of one row of each (CPU) input tensor: its dtype, shape and bytes."""
    digest = hashlib.blake2b(digest_size=16)
    for tensor in inputs:
        part = tensor[row].contiguous()
        digest.update(f"{part.dtype}{tuple(part.shape)}".encode())
        digest.update(part.numpy().tobytes())
    return digest.digest()


def cache_text_features(text_encoder: torch.nn.Module, capacity: int = DEFAULT_CAPACITY) -> TextFeatureCache:
    """Route `text_encoder`'s calls through a new TextFeatureCache (installed on this instance only); returns it."""
    cache = TextFeatureCache(text_encoder.forward, capacity)
    text_encoder.forward = cache  # nn.Module.__call__ looks forward up on the instance first
    return cache
