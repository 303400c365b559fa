"""SAM 3 (transformers Sam3Model) as a text-prompted segmenter: each phrase -> every instance it names, with masks.

PAPER.md §5: SAM 3 does open-vocabulary detection and segmentation in one model (Promptable Concept Segmentation),
so it can stand in for GroundingDINO + SAM2 in image mode.

Faces: `real` loads facebook/sam3 (or a local folder) with its processor; `tiny` builds a small seeded model, a
112 px image processor and an in-memory CLIP tokenizer (tests, offline smoke runs); `random` builds the real SAM 3
detector architecture (840 M parameters, 1008 px) with random weights and the in-memory tokenizer (cost only).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from transformers import (
    CLIPTextConfig,
    CLIPTokenizer,
    Sam3Config,
    Sam3DETRDecoderConfig,
    Sam3DETREncoderConfig,
    Sam3GeometryEncoderConfig,
    Sam3ImageProcessor,
    Sam3MaskDecoderConfig,
    Sam3Model,
    Sam3Processor,
    Sam3VisionConfig,
    Sam3VisionModel,
    Sam3ViTConfig,
)
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from tools.models.base import ModelSpec
from tools.models.precision import scoped_autocast
from tools.models.sam3_vision import CachedVision, Sam3VisionCache, load_sharing_vision, seeded_on_shared_vit
from tools.models.tiny_text import byte_symbols

TINY_IMAGE_SIZE = 112  # px: 8 x 8 patches of 14 px (the real model: 1008 px, 72 x 72 patches)
TEXT_LENGTH = 32  # tokens: Sam3Processor pads every prompt to 32, the text encoder's position table
_START, _END = "<|startoftext|>", "<|endoftext|>"


class TextInstance(NamedTuple):
    """One instance found for a phrase: bool mask (H, W) at the image's original size, detection score in [0, 1]
    (query logit x presence, both sigmoids), and its box xyxy in original px."""

    phrase: str
    mask: np.ndarray
    score: float
    box: tuple[float, float, float, float]


@cache
def clip_vocab() -> dict[str, int]:
    """CLIP byte-level BPE vocabulary without merges: 256 byte symbols (ids 0-255), the same with the end-of-word
    marker "</w>" (256-511), then <|startoftext|> 512 and <|endoftext|> 513 (CLIP's own order, minus the merges)."""
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), _START, _END]
    return {token: i for i, token in enumerate(tokens)}


def clip_tokenizer() -> CLIPTokenizer:
    """In-memory CLIP tokenizer over clip_vocab(): every word becomes one token per byte; pads with <|endoftext|>
    as CLIP does. Any text encodes, so tiny and random faces take real phrases."""
    return CLIPTokenizer(
        vocab=dict(clip_vocab()), merges=[], unk_token=_END, bos_token=_START, eos_token=_END, pad_token=_END
    )


def _text_ids() -> dict[str, int]:
    vocab = clip_vocab()
    return {"bos_token_id": vocab[_START], "eos_token_id": vocab[_END], "pad_token_id": vocab[_END]}


def tiny_config(width: int = 32) -> Sam3Config:
    """A small SAM 3 for 112 px inputs: ViT 32 wide x 2 layers (windowed 4 x 4, then global), FPN `width` wide at
    scales 4, 2, 1, 0.5 of the 8 x 8 patch grid (32, 16, 8, 4 px maps), CLIP text 32 wide x 1 layer over
    clip_vocab(), geometry encoder / DETR encoder / DETR decoder (8 queries) / mask decoder all `width` wide, one
    layer each (the video model needs them as wide as its tracker's memory path)."""
    grid = TINY_IMAGE_SIZE // 14
    backbone = Sam3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=TINY_IMAGE_SIZE,
        patch_size=14,
        window_size=4,
        global_attn_indexes=[1],
        pretrain_image_size=TINY_IMAGE_SIZE,
    )
    vision = Sam3VisionConfig(
        backbone_config=backbone,
        fpn_hidden_size=width,
        backbone_feature_sizes=[[4 * grid, 4 * grid], [2 * grid, 2 * grid], [grid, grid]],
    )
    text = CLIPTextConfig(
        vocab_size=len(clip_vocab()),
        hidden_size=32,
        intermediate_size=64,
        projection_dim=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=TEXT_LENGTH,
        **_text_ids(),
    )
    small = {"hidden_size": width, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 2 * width}
    return Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(**small),
        detr_encoder_config=Sam3DETREncoderConfig(**small),
        detr_decoder_config=Sam3DETRDecoderConfig(**small, num_queries=8),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=width, num_attention_heads=2),
    )


def random_config() -> Sam3Config:
    """facebook/sam3's detector, written out so no file is needed (the values transformers 5.24 documents as
    facebook/sam3 in its Sam3*Config defaults): ViT-L/14-style backbone 1024 wide x 32 layers, 16 heads, MLP 4736,
    windows of 24 with global attention in layers 7, 15, 23, 31, 1008 px input, position table of a 336 px
    pretraining tiled; FPN 256 at scales 4, 2, 1, 0.5 (288, 144, 72 px maps); CLIP text encoder 1024 wide x 24
    layers, 16 heads, MLP 4096, vocabulary 49408, 32 positions; geometry encoder 256 x 3 layers, DETR encoder
    256 x 6, DETR decoder 256 x 6 with 200 queries (8 heads, MLP 2048 throughout); mask decoder 256 wide with 3
    upsampling stages. The in-memory tokenizer only uses ids < 514 of the real vocabulary."""
    backbone = Sam3ViTConfig(
        hidden_size=1024,
        intermediate_size=4736,
        num_hidden_layers=32,
        num_attention_heads=16,
        image_size=1008,
        patch_size=14,
        window_size=24,
        global_attn_indexes=[7, 15, 23, 31],
        pretrain_image_size=336,
    )
    vision = Sam3VisionConfig(
        backbone_config=backbone,
        fpn_hidden_size=256,
        backbone_feature_sizes=[[288, 288], [144, 144], [72, 72]],
        scale_factors=[4.0, 2.0, 1.0, 0.5],
    )
    text = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=1024,
        intermediate_size=4096,
        projection_dim=512,
        num_hidden_layers=24,
        num_attention_heads=16,
        max_position_embeddings=TEXT_LENGTH,
        hidden_act="gelu",
        **_text_ids(),
    )
    detr = {"hidden_size": 256, "num_attention_heads": 8, "intermediate_size": 2048}
    return Sam3Config(
        vision_config=vision,
        text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(**detr, num_layers=3),
        detr_encoder_config=Sam3DETREncoderConfig(**detr, num_layers=6),
        detr_decoder_config=Sam3DETRDecoderConfig(**detr, num_layers=6, num_queries=200),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=256, num_upsampling_stages=3, num_attention_heads=8),
    )


def _processor(side: int) -> Sam3Processor:
    """Real Sam3Processor: images resized (no aspect kept) to side x side, mean/std 0.5; the in-memory tokenizer."""
    mask_side = side * 2 // 7  # 288 for 1008, as the real processor (labels only; predictions are post-processed)
    image_processor = Sam3ImageProcessor(
        size={"height": side, "width": side}, mask_size={"height": mask_side, "width": mask_side}
    )
    return Sam3Processor(image_processor=image_processor, tokenizer=clip_tokenizer())


def build_tiny() -> tuple[Sam3Model, Sam3Processor]:
    return seeded_on_shared_vit(Sam3Model, tiny_config(), _vision_encoder), _processor(TINY_IMAGE_SIZE)


def build_random() -> tuple[Sam3Model, Sam3Processor]:
    return seeded_on_shared_vit(Sam3Model, random_config(), _vision_encoder), _processor(1008)


def _vision_encoder(model: Sam3Model) -> Sam3VisionModel:
    return model.vision_encoder


# ---------------------------------------------------------------------------------------------------------------
# Adapter


@dataclass
class TextSegmentStats:
    """Running counters: phrase prompts decoded, instances returned, seconds in each stage (encode: preprocessing,
    ViT when not cached, FPN neck). ViT passes are counted by the vision cache."""

    prompts: int = 0
    instances: int = 0
    encode_seconds: float = 0.0
    decode_seconds: float = 0.0


class Sam3TextSegmenter(CachedVision):
    """Text-prompted instance segmentation over a Sam3Model and its processor on one device. Pictures' ViT outputs
    are kept in `vision_cache` (by default one of its own, of VISION_CACHE_FRAMES; load_sam3 gives the one every
    SAM 3 model of the checkpoint shares)."""

    def __init__(
        self,
        spec: ModelSpec,
        model: Sam3Model,
        processor: Sam3Processor,
        device: str,
        vision_cache: Sam3VisionCache | None = None,
    ) -> None:
        self.spec = spec
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.stats = TextSegmentStats()
        self._use_vision_cache(processor, vision_cache)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def segment_text(
        self, image: Image.Image, phrases: Sequence[str], threshold: float = 0.5, mask_threshold: float = 0.5
    ) -> list[TextInstance]:
        """Every instance scoring > threshold for each phrase (one prompt per phrase; duplicates and blank
        phrases skipped), in phrase order, best score first within a phrase. Masks are the sigmoid mask
        probabilities upsampled to the image's size and cut at > mask_threshold. The image is encoded once for
        all phrases."""
        wanted = [p for p in dict.fromkeys(phrases) if p.strip()]
        if not wanted:
            return []
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        size = (rgb.height, rgb.width)
        vision = self._vision_features(rgb)
        start = time.perf_counter()
        found: list[TextInstance] = []
        for phrase in wanted:
            text = self.processor(text=phrase, return_tensors="pt")
            with torch.inference_mode(), scoped_autocast(self.device):
                out = self.model(
                    vision_embeds=vision,
                    input_ids=text["input_ids"].to(self.device),
                    attention_mask=text["attention_mask"].to(self.device),
                )
                result = self.processor.post_process_instance_segmentation(
                    out, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[size]
                )[0]
            found += _instances(phrase, result)
            self.stats.prompts += 1
        self.stats.instances += len(found)
        self.stats.decode_seconds += time.perf_counter() - start
        return found

    def _vision_features(self, rgb: Image.Image) -> Sam3VisionEncoderOutput:
        """The picture's vision features, the ViT's part from the cache when the picture was seen."""
        start = time.perf_counter()
        pixels = self.processor(images=rgb, return_tensors="pt", device=self.device)["pixel_values"].to(self.dtype)
        with torch.inference_mode(), scoped_autocast(self.device):
            vision = self.vision_cache.features(self.model.vision_encoder, pixels, self._picture(rgb))
        self.stats.encode_seconds += time.perf_counter() - start
        return vision


def _instances(phrase: str, result: dict[str, torch.Tensor]) -> list[TextInstance]:
    """One phrase's post-processed instances (scores (k,), boxes (k, 4), masks (k, H, W)), best score first."""
    scores = result["scores"].float().cpu().numpy()
    boxes = result["boxes"].float().cpu().numpy()
    masks = result["masks"].cpu().numpy().astype(bool)
    order = np.argsort(-scores, kind="stable")
    return [TextInstance(phrase, masks[i], float(scores[i]), _box(boxes[i])) for i in order]


def _box(row: np.ndarray) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in row)
    return (x0, y0, x1, y1)


def load_sam3(spec: ModelSpec, device: str) -> Sam3TextSegmenter:
    """The text segmenter for `spec` on `device`, its ViT shared with the checkpoint's other SAM 3 models
    (sam3_vision). Weights stay float32 unless spec.dtype says otherwise; on CUDA each call runs under bfloat16
    autocast."""
    pretrained = (Sam3Model.from_pretrained, Sam3Processor.from_pretrained)
    model, processor, cache = load_sharing_vision(spec, device, pretrained, build_tiny, build_random, _vision_encoder)
    return Sam3TextSegmenter(spec, model, processor, device, cache)
