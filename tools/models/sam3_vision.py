"""SAM 3's ViT: one per checkpoint, device and dtype in a process, and a cache of its outputs.

facebook/sam3's detector (Sam3Model), tracker (Sam3TrackerVideoModel) and video model (Sam3VideoModel) encode frames
with the same ViT (446 M parameters, 1.8 GB in float32). The checkpoint stores it once, and transformers' weight
conversion loads the tracker's from the detector's, but each model loaded on its own holds a copy and encodes every
frame again. `share_vision` gives all SAM 3 models of one checkpoint the same ViT module and the same
Sam3VisionCache. In the sam3 profile's propagate mode, the detector grounds the seed candidates and the tracker
carries them through the clip. With the shared ViT the process holds one copy, and the tracker reads the frames the
detector already encoded from the cache (and the reverse when a drifted frame is grounded again).

The tiny and random faces draw one seeded ViT (`seeded_on_shared_vit`) in every SAM 3 model, as the checkpoint does, so
whether a model's ViT is its own or the shared one changes nothing in its answers.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from PIL import Image
from transformers import PretrainedConfig, PreTrainedModel, ProcessorMixin, Sam3VisionModel, Sam3ViTModel
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from tools.embedding_cache import LRUCache, image_digest
from tools.models.base import ModelSpec
from tools.models.registry import model_for_face
from tools.models.tiny_text import seeded_model

VISION_CACHE_FRAMES = 10
"""Pictures whose SAM 3 ViT output is kept (Sam3VisionCache). 10 covers every frame of an AVSBench clip (5 or 10
sampled): 212 MB in float32 at 1008 px (half where CUDA's bfloat16 autocast makes it bfloat16; not measured here).
The cache lives as long as the process: a long-lived one (chat, web app) keeps it between runs."""

Picture = tuple[str, str]
"""A picture as the cache knows it: (tools.embedding_cache.image_digest of the decoded picture, preprocessing_key of
the processor that turned it into pixels)."""


class Sam3VisionCache:
    """SAM 3's ViT output for the last `capacity` pictures (0 keeps none), so that a refine round, which asks SAM 3 the
    same frames with another threshold or other phrases, runs only the FPN neck, the text encoder and the decoders.

    Measured on 2 CPU cores at real size (1008 px, random weights): the ViT takes 32 s a picture, the neck 0.6-0.8 s,
    a phrase's decode 3 s. An entry is the ViT's last_hidden_state, (1, 72 x 72, 1024): 21 MB in float32. The neck's
    four FPN levels would save the 0.7 s but hold 113 MB more per picture, and each SAM 3 model has its own neck on
    the shared ViT (the detector's and the tracker's differ), so they are recomputed.

    Keys: (Picture, pixel tensor shape, its dtype). Counters: `passes` (ViT runs) and `reused` (pictures answered
    from the cache).
    """

    def __init__(self, capacity: int) -> None:
        self.entries: LRUCache[tuple, torch.Tensor] | None = LRUCache(capacity) if capacity else None
        self.passes = 0
        self.reused = 0

    def features(self, encoder: Sam3VisionModel, pixels: torch.Tensor, picture: Picture) -> Sam3VisionEncoderOutput:
        """What `encoder(pixels)` returns (last_hidden_state, fpn_hidden_states, fpn_position_encoding) for pixels
        (B, 3, S, S) of `picture`; the ViT runs only when the picture is not cached. Call it under the caller's
        inference_mode and autocast."""
        key = (picture, tuple(pixels.shape), str(pixels.dtype))
        hidden = self.entries.get(key) if self.entries is not None else None
        if hidden is None:
            hidden = encoder.backbone(pixels).last_hidden_state
            self.passes += 1
            if self.entries is not None:
                self.entries.put(key, hidden)
        else:
            self.reused += 1
        # The rest of Sam3VisionModel.forward: patch tokens back to their grid, then the FPN neck.
        patch = encoder.config.backbone_config.patch_size
        grid = hidden.view(hidden.shape[0], pixels.shape[-2] // patch, pixels.shape[-1] // patch, -1)
        fpn_hidden_states, fpn_position_encoding = encoder.neck(grid.permute(0, 3, 1, 2))
        return Sam3VisionEncoderOutput(
            last_hidden_state=hidden,
            fpn_hidden_states=fpn_hidden_states,
            fpn_position_encoding=fpn_position_encoding,
        )

    @contextlib.contextmanager
    def answering(
        self, owner: torch.nn.Module, method: str, encoder: Sam3VisionModel, picture: Picture
    ) -> Iterator[None]:
        """For the block, `owner.<method>(pixel_values, ...)`, the call by which a SAM 3 model encodes a frame with
        `encoder`, answers features(encoder, pixel_values, picture). The model is changed in place: one call at a
        time per model."""

        def features(pixel_values: torch.Tensor, *args: object, **kwargs: object) -> Sam3VisionEncoderOutput:
            return self.features(encoder, pixel_values, picture)

        setattr(owner, method, features)
        try:
            yield
        finally:
            delattr(owner, method)

    def nbytes(self) -> int:
        """Bytes the cached ViT outputs hold."""
        entries = self.entries.values() if self.entries is not None else []
        return sum(t.numel() * t.element_size() for t in entries)

    def clear(self) -> None:
        if self.entries is not None:
            self.entries.clear()


def preprocessing_key(processor: ProcessorMixin) -> str:
    """What turns a SAM 3 processor's pictures into pixels (its image processor's settings), as a short digest: two
    models whose processors agree on it get the same pixels for the same picture."""
    settings = processor.image_processor.to_json_string()
    return hashlib.blake2b(settings.encode(), digest_size=8).hexdigest()


def seeded_on_shared_vit(
    model_class: type[PreTrainedModel], config: PretrainedConfig, vision_encoder: Callable[[Any], Sam3VisionModel]
) -> Any:
    """A seeded `model_class(config)` (tiny and random faces) whose ViT, found by `vision_encoder`, has the weights
    every SAM 3 model built here gives a ViT of that configuration."""
    model = seeded_model(model_class, config)
    encoder = vision_encoder(model)
    encoder.backbone = seeded_model(Sam3ViTModel, encoder.backbone.config)
    return model


class CachedVision:
    """Mixin for a SAM 3 adapter whose frames' ViT outputs go through a Sam3VisionCache."""

    vision_cache: Sam3VisionCache
    preprocessing: str
    """preprocessing_key of the adapter's processor."""

    def _use_vision_cache(self, processor: ProcessorMixin, cache: Sam3VisionCache | None) -> None:
        """Read ViT outputs through `cache`, or through one of the adapter's own (VISION_CACHE_FRAMES) if None."""
        self.vision_cache = Sam3VisionCache(VISION_CACHE_FRAMES) if cache is None else cache
        self.preprocessing = preprocessing_key(processor)

    def _picture(self, image: Image.Image) -> Picture:
        """The cache's name for a decoded picture that this adapter's processor turns into pixels."""
        return (image_digest(image), self.preprocessing)


_CONFIG_METADATA = ("dtype", "_name_or_path", "architectures", "transformers_version")
"""Config fields that say where a ViT came from, not what it computes (a detector and a tracker loaded from one
checkpoint differ in them)."""

_SHARED: dict[tuple, tuple[Sam3ViTModel, Sam3VisionCache]] = {}
_SHARED_LOCK = threading.Lock()


def share_vision(spec: ModelSpec, device: str, dtype: torch.dtype, encoder: Sam3VisionModel) -> Sam3VisionCache:
    """Give `encoder` (a SAM 3 model's vision encoder, before the model moves to `device` and `dtype`) the process's
    ViT for spec's checkpoint there, so the model's own copy is never moved and is freed; the first model of a
    checkpoint lends its ViT to the later ones. Returns the ViT-output cache all of them share.

    Models share when they agree on the checkpoint (model id, face, revision), device, dtype and the ViT's
    configuration; the shared ViT and cache live as long as the process, as loaded models do in the registry.
    """
    backbone = encoder.backbone
    config = {k: v for k, v in backbone.config.to_dict().items() if k not in _CONFIG_METADATA}
    key = (spec.model_id, spec.face, spec.revision, device, dtype, repr(sorted(config.items())))
    with _SHARED_LOCK:
        if key in _SHARED:
            encoder.backbone = _SHARED[key][0]
        else:
            _SHARED[key] = (backbone, Sam3VisionCache(VISION_CACHE_FRAMES))
        return _SHARED[key][1]


def load_sharing_vision(
    spec: ModelSpec,
    device: str,
    pretrained: tuple[Callable[..., Any], Callable[..., Any]],
    tiny: Callable[[], tuple[Any, Any]],
    random: Callable[[], tuple[Any, Any]],
    vision_encoder: Callable[[Any], Sam3VisionModel],
) -> tuple[Any, Any, Sam3VisionCache]:
    """A SAM 3 model and its processor on `device` (registry.model_for_face's faces and dtype), the ViT of its
    `vision_encoder` shared (share_vision), and the shared ViT-output cache."""
    model, processor, dtype = model_for_face(spec, device, pretrained, tiny, random)
    cache = share_vision(spec, device, dtype, vision_encoder(model))
    return model.to(device=device, dtype=dtype), processor, cache
