"""SAM2 (transformers Sam2Model) as the project's Segmenter: boxes -> one mask per box, image by image.

Faces: `real` loads facebook/sam2.1-hiera-tiny / -small / -base-plus / -large (or a local folder) with its processor;
`tiny` builds a small seeded model with a 128 px image processor in memory; `random` builds the real
sam2.1-hiera-tiny architecture with random weights (cost measurements).

The image embedding is separable (`embed` then `segment_with_embedding`) so callers can cache it across prompt
refinement rounds; `segment` is the two in a row. One mask per box (multimask_output=False), as Grounded-SAM does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2ImageProcessor,
    Sam2MaskDecoderConfig,
    Sam2Model,
    Sam2Processor,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
)

from tools.errors import InputError
from tools.models.base import ModelSpec
from tools.models.precision import scoped_autocast
from tools.models.registry import model_for_face

TINY_SEED = 0
TINY_IMAGE_SIZE = 128  # px; the tiny model's input side (the real models use 1024)
MAX_BOXES_PER_DECODE = 64  # bounds the mask decoder's memory when a frame has many boxes
# Images per encoder pass. On a GPU one pass over 5 frames at 1024 px costs about what one frame does alone
# (H100, hiera-small: 25 ms batched vs 77 ms one by one); on a CPU batching gains nothing and holds more memory.
ACCELERATOR_EMBED_BATCH = 8


def tiny_config() -> Sam2Config:
    """A small SAM2 for 128 px inputs: Hiera with 12-24-48-96 channels and 1-1-2-1 blocks, FPN/prompt/decoder
    width 32. Feature maps 32/16/8 px = 128 / (4, 8, 16); the prompt encoder's grid is 128 / 16 = 8."""
    side = TINY_IMAGE_SIZE
    backbone = Sam2HieraDetConfig(
        hidden_size=12,
        image_size=[side, side],
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[12, 24, 48, 96],
        num_attention_heads_per_stage=[1, 1, 2, 2],
        window_size_per_stage=[8, 4, 4, 2],
        global_attention_blocks=[3],
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=[96, 48, 24, 12],
        backbone_feature_sizes=[[side // 4, side // 4], [side // 8, side // 8], [side // 16, side // 16]],
        fpn_hidden_size=32,
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=32, image_size=side, patch_size=16, mask_input_channels=8)
    decoder = Sam2MaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, iou_head_hidden_dim=32
    )
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


# Hiera sizes of the sam2.1 checkpoints (Meta's configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml, as transformers'
# convert_sam2_to_hf.py writes them); the FPN neck takes the stages' widths, largest first.
HIERA_SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"blocks_per_stage": [1, 2, 7, 2], "global_attention_blocks": [5, 7, 9]},
    "small": {"blocks_per_stage": [1, 2, 11, 2], "global_attention_blocks": [7, 10, 13]},
    "base-plus": {
        "hidden_size": 112,
        "embed_dim_per_stage": [112, 224, 448, 896],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "blocks_per_stage": [2, 3, 16, 3],
        "global_attention_blocks": [12, 16, 20],
        "window_positional_embedding_background_size": [14, 14],
    },
    "large": {
        "hidden_size": 144,
        "embed_dim_per_stage": [144, 288, 576, 1152],
        "num_attention_heads_per_stage": [2, 4, 8, 16],
        "blocks_per_stage": [2, 6, 36, 4],
        "global_attention_blocks": [23, 33, 43],
        "window_size_per_stage": [8, 4, 16, 8],
    },
}


def random_config(model_id: str = "facebook/sam2.1-hiera-tiny", image_size: int = 1024) -> Sam2Config:
    """The sam2.1-hiera-{tiny,small,base-plus,large} architecture named by `model_id`, written out so no file is
    needed.

    Sources: Meta's configs/sam2.1/sam2.1_hiera_t.yaml (Hiera embed_dim 96, num_heads 1, stages 1-2-7-2,
    global_att_blocks 5-7-9, window_pos_embed_bkg_spatial_size 7x7, Hiera's default window_spec 8-4-14-7; FPN
    d_model 256 over backbone channels 768-384-192-96, top-down levels 2-3; image 1024), the other sizes' changes
    to it (HIERA_SIZES), and the SAM2 defaults for prompt encoder (256 wide, 16 px patches, 16 mask channels) and
    mask decoder (256 wide, 2 two-way layers, 8 heads, MLP 2048, 3 multimask outputs, IoU head 3 x 256, dynamic
    multimask via stability 0.05 / 0.98). These equal the Sam2*Config defaults of transformers 5.24, which document
    them as sam2.1-hiera-tiny.

    `image_size` (px, a multiple of 64) other than 1024 scales the input and every feature map with it, for cheaper
    cost runs (e.g. evals.bench --quick); the weights' shapes do not depend on it.
    """
    if image_size % 64:
        raise InputError(f"SAM2 image_size must be a multiple of 64 px, got {image_size}")
    side = image_size
    name = model_id.lower()
    size = next((s for s in ("base-plus", "small", "large", "tiny") if s in name), None)
    if size is None:
        raise InputError(f"segmenter face 'random' builds sam2.1-hiera-tiny/-small/-base-plus/-large, not '{model_id}'")
    hiera = {
        "hidden_size": 96,
        "num_attention_heads": 1,
        "image_size": [side, side],
        "patch_kernel_size": [7, 7],
        "patch_stride": [4, 4],
        "patch_padding": [3, 3],
        "query_stride": [2, 2],
        "window_positional_embedding_background_size": [7, 7],
        "num_query_pool_stages": 3,
        "embed_dim_per_stage": [96, 192, 384, 768],
        "num_attention_heads_per_stage": [1, 2, 4, 8],
        "window_size_per_stage": [8, 4, 14, 7],
        **HIERA_SIZES[size],
    }
    backbone = Sam2HieraDetConfig(**hiera)
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=hiera["embed_dim_per_stage"][::-1],
        backbone_feature_sizes=[[side // 4, side // 4], [side // 8, side // 8], [side // 16, side // 16]],
        fpn_hidden_size=256,
        fpn_top_down_levels=[2, 3],
        num_feature_levels=3,
    )
    prompt = Sam2PromptEncoderConfig(hidden_size=256, image_size=side, patch_size=16, mask_input_channels=16)
    decoder = Sam2MaskDecoderConfig(
        hidden_size=256,
        mlp_dim=2048,
        num_hidden_layers=2,
        num_attention_heads=8,
        attention_downsample_rate=2,
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
    )
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def _processor(side: int) -> Sam2Processor:
    """Real Sam2Processor: images resized (no aspect kept, no padding) to side x side, ImageNet mean/std."""
    image_processor = Sam2ImageProcessor(
        size={"height": side, "width": side}, mask_size={"height": side // 4, "width": side // 4}
    )
    return Sam2Processor(image_processor=image_processor)


def _seeded_model(config: Sam2Config, seed: int = TINY_SEED) -> Sam2Model:
    # fork_rng keeps the caller's global RNG untouched while making the weights reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Sam2Model(config)


def build_tiny() -> tuple[Sam2Model, Sam2Processor]:
    return _seeded_model(tiny_config()), _processor(TINY_IMAGE_SIZE)


def build_random(model_id: str, image_size: int = 1024) -> tuple[Sam2Model, Sam2Processor]:
    return _seeded_model(random_config(model_id, image_size)), _processor(image_size)


@dataclass(frozen=True)
class Sam2Embedding:
    """One image's encoder output, opaque to callers: multi-scale feature maps (1, C_l, H_l, W_l) on the model's
    device, the image's original (height, width) in px, and the id of the segmenter that made it."""

    features: tuple[torch.Tensor, ...]
    original_size: tuple[int, int]
    owner: int


@dataclass
class SegmentStats:
    """Running counters: images encoded (several per encoder pass when batched), mask-decoder passes, boxes
    segmented, and seconds spent encoding and decoding."""

    embed_calls: int = 0
    decode_calls: int = 0
    boxes: int = 0
    embed_seconds: float = 0.0
    decode_seconds: float = 0.0


class Sam2Segmenter:
    """Segmenter over a Sam2Model and its processor on one device."""

    def __init__(self, spec: ModelSpec, model: Sam2Model, processor: Sam2Processor, device: str) -> None:
        self.spec = spec
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.stats = SegmentStats()
        self.embed_batch_size = 1 if device == "cpu" else ACCELERATOR_EMBED_BATCH
        # sigmoid of SAM2's object-presence logit per box of the last call (N,); the Protocol returns IoU scores.
        self.last_object_scores = np.zeros((0,), np.float32)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def embed(self, image: Image.Image) -> Sam2Embedding:
        """Run the image encoder once; the result can be reused for any number of box prompts on this image."""
        return self.embed_batch([image])[0]

    def embed_batch(self, images: Sequence[Image.Image]) -> list[Sam2Embedding]:
        """One encoder pass over all `images` (any sizes: the processor resizes each to the model's square input);
        one embedding per image, each owning its own tensors. Callers bound the batch (`embed_batch_size`)."""
        start = time.perf_counter()
        rgb = [image if image.mode == "RGB" else image.convert("RGB") for image in images]
        inputs = self.processor(images=rgb, return_tensors="pt", device=self.device)  # resized where it runs
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.dtype)
        with torch.inference_mode(), scoped_autocast(self.device):
            features = self.model.get_image_embeddings(pixel_values)
        self.stats.embed_calls += len(rgb)
        self.stats.embed_seconds += time.perf_counter() - start
        embeddings = []
        for k, image in enumerate(rgb):
            # A row view of a batch would keep the whole batch alive while any one frame's embedding is cached.
            levels = tuple(level[k : k + 1].clone() if len(rgb) > 1 else level for level in features)
            embeddings.append(Sam2Embedding(levels, (image.height, image.width), id(self)))
        return embeddings

    def segment_with_embedding(self, embedding: Sam2Embedding, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """boxes: (N, 4) xyxy px of the embedded image. Returns bool masks (N, H, W) at the original size,
        binarised at the processor's default logit threshold (0), and float32 predicted-IoU scores (N,)."""
        if embedding.owner != id(self):
            raise ValueError("this embedding was computed by another segmenter")
        height, width = embedding.original_size
        boxes = _check_boxes(boxes)
        if len(boxes) == 0:
            self.last_object_scores = np.zeros((0,), np.float32)
            return np.zeros((0, height, width), dtype=bool), np.zeros((0,), dtype=np.float32)
        start = time.perf_counter()
        masks, scores, objects = [], [], []
        for lo in range(0, len(boxes), MAX_BOXES_PER_DECODE):
            chunk = boxes[lo : lo + MAX_BOXES_PER_DECODE]
            prompts = self.processor(
                input_boxes=[chunk.tolist()], original_sizes=[[height, width]], return_tensors="pt"
            )
            with torch.inference_mode(), scoped_autocast(self.device):
                out = self.model(
                    image_embeddings=list(embedding.features),
                    input_boxes=prompts["input_boxes"].to(self.device),
                    multimask_output=False,
                )
            # pred_masks (1, n, 1, h, w) low-res logits -> (n, 1, H, W) bool at the original size.
            # Upsampled and thresholded on the model's device: only the bool masks travel (a 1280x720 float
            # upsample on the CPU costs more than the decoder on a GPU).
            full = self.processor.post_process_masks(out.pred_masks.float(), [[height, width]])[0]
            masks.append(full[:, 0].cpu().numpy())
            scores.append(out.iou_scores.float().cpu()[0, :, 0].numpy())
            objects.append(torch.sigmoid(out.object_score_logits.float().cpu()[0, :, 0]).numpy())
            self.stats.decode_calls += 1
        self.stats.boxes += len(boxes)
        self.stats.decode_seconds += time.perf_counter() - start
        self.last_object_scores = np.concatenate(objects).astype(np.float32)
        return np.concatenate(masks), np.concatenate(scores).astype(np.float32)

    def segment(self, image: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """boxes: float32 (N, 4) xyxy px of `image`; returns bool masks (N, H, W) and float32 scores (N,).
        N = 0 gives empty arrays without running the model."""
        boxes = _check_boxes(boxes)
        if len(boxes) == 0:
            self.last_object_scores = np.zeros((0,), np.float32)
            return np.zeros((0, image.height, image.width), dtype=bool), np.zeros((0,), dtype=np.float32)
        return self.segment_with_embedding(self.embed(image), boxes)


def _check_boxes(boxes: np.ndarray) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4 or not np.all(np.isfinite(arr)):
        raise ValueError(f"boxes must be finite float (N, 4) xyxy, got shape {arr.shape}")
    return arr


def load_sam2(spec: ModelSpec, device: str) -> Sam2Segmenter:
    """Build the Segmenter for `spec` on `device`. Weights stay float32 unless spec.dtype says otherwise; on CUDA
    each call runs under bfloat16 autocast."""
    pretrained = (Sam2Model.from_pretrained, Sam2Processor.from_pretrained)
    model, processor, dtype = model_for_face(spec, device, pretrained, build_tiny, lambda: build_random(spec.model_id))
    model = model.to(device=device, dtype=dtype)
    return Sam2Segmenter(spec, model, processor, device)
