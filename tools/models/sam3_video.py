"""SAM 3's video tracker (transformers Sam3TrackerVideoModel): boxes on one seed frame -> masks on every frame.

The sam3 profile's propagate mode: SAM 3 grounds the translated phrases as text prompts on the seed candidates
(tools/models/sam3_roles.py) and this tracker carries the seed frame's instances through the clip. In transformers
Sam3TrackerVideoModel is a modular copy of Sam2VideoModel (same prompt encoder, mask decoder, memory attention,
memory encoder, inference session and per-frame outputs) on SAM 3's ViT backbone with its own FPN neck, so
tools/models/sam2_video.py's streaming, pruned propagator runs it as it is: only the model, processor and session
classes differ. The tracker's ViT is the detector's (tools/models/sam3_vision.py): one copy in the process, and
the frames the detector grounded are not encoded again.

Faces: `real` loads facebook/sam3 (or a local folder) exactly as transformers documents it,
`Sam3TrackerVideoModel.from_pretrained("facebook/sam3")` and `Sam3TrackerVideoProcessor.from_pretrained(...)`: that
checkpoint is a Sam3VideoModel (detector + tracker), whose config.json nests the tracker's config as tracker_config
(found by its model_type), and transformers' weight-conversion mapping for sam3_tracker_video renames
`tracker_model.*` to the tracker, `detector_model.vision_encoder.backbone.*` (the ViT both share) to its backbone and
`tracker_neck.*` to its neck; the detector's other weights are ignored. `tiny` builds a small seeded tracker on the
tiny SAM 3 ViT (112 px) with a 112 px processor in memory; `random` builds facebook/sam3's tracker architecture
(1008 px) with random weights (cost measurements).
"""

from __future__ import annotations

import contextlib
from typing import Any

from PIL import Image
from transformers import Sam3TrackerVideoConfig, Sam3TrackerVideoModel, Sam3TrackerVideoProcessor, Sam3VisionModel
from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor
from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import Sam3TrackerVideoInferenceSession

from tools.models import sam3
from tools.models.base import ModelSpec
from tools.models.sam2_video import SAM21_MEMORY, TINY_MEMORY_WIDTH, ClipSession, Sam2VideoPropagator, tiny_memory
from tools.models.sam3_vision import CachedVision, Sam3VisionCache, load_sharing_vision, seeded_on_shared_vit

SAM3_IMAGE_SIZE = 1008  # px: 72 x 72 patches of 14 px
SAM3_TRACKER_MEMORY: dict[str, Any] = {
    **SAM21_MEMORY,
    "max_cond_frame_num": 4,
    "memory_attention_rope_feat_sizes": [SAM3_IMAGE_SIZE // 14] * 2,
}
"""facebook/sam3's tracker memory path (transformers 5.24's Sam3TrackerVideoConfig defaults, which
convert_sam3_video_to_hf.py writes into that checkpoint): sam2.1's, except that memory attention reads at most 4
conditioning frames (sam2.1: all) on the 72 x 72 feature grid of a 1008 px input."""


def tiny_config() -> Sam3TrackerVideoConfig:
    """sam3.tiny_config()'s 112 px ViT (32 wide x 2 layers, 8 x 8 patches) with a TINY_MEMORY_WIDTH-wide FPN neck,
    prompt encoder and mask decoder, and sam2_video's tiny memory path on the 8 x 8 grid; 7 memory frames and 16
    pointers as the real model (so the memory window the propagator keeps is the real one)."""
    # Memory attention needs the FPN as wide as itself, a multiple of 64 above 64.
    vision = sam3.tiny_config(TINY_MEMORY_WIDTH).vision_config
    return Sam3TrackerVideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": TINY_MEMORY_WIDTH, "mask_input_channels": 8},
        mask_decoder_config={
            "hidden_size": TINY_MEMORY_WIDTH,
            "mlp_dim": 64,
            "num_attention_heads": 4,
            "iou_head_hidden_dim": 32,
        },
        image_size=sam3.TINY_IMAGE_SIZE,
        **{**SAM3_TRACKER_MEMORY, **tiny_memory(sam3.TINY_IMAGE_SIZE // 14)},
    )


def random_config() -> Sam3TrackerVideoConfig:
    """facebook/sam3's tracker, written out so no file is needed: the detector's ViT (sam3.random_config(), shared
    in the checkpoint) with an FPN neck 256 wide, prompt encoder 256 wide, mask decoder 256 wide (MLP 2048, 8 heads)
    and SAM3_TRACKER_MEMORY, 1008 px input."""
    return Sam3TrackerVideoConfig(
        vision_config=sam3.random_config().vision_config,
        prompt_encoder_config={"hidden_size": 256, "mask_input_channels": 16},
        mask_decoder_config={"hidden_size": 256, "mlp_dim": 2048, "num_attention_heads": 8, "iou_head_hidden_dim": 256},
        image_size=SAM3_IMAGE_SIZE,
        **SAM3_TRACKER_MEMORY,
    )


def frames_processor(side: int) -> Sam2VideoVideoProcessor:
    """The video processor facebook/sam3 ships for its tracker and its video model: side x side, mean / std 0.5."""
    half = [0.5, 0.5, 0.5]
    return Sam2VideoVideoProcessor(image_mean=half, image_std=half, size={"height": side, "width": side})


def _processor(side: int) -> Sam3TrackerVideoProcessor:
    """Real Sam3TrackerVideoProcessor as facebook/sam3 ships it (convert_sam3_video_to_hf.py): frames resized to
    side x side with mean / std 0.5 (Sam3ImageProcessor), boxes normalised to `side`."""
    return Sam3TrackerVideoProcessor(
        image_processor=sam3._processor(side).image_processor, video_processor=frames_processor(side)
    )


def build_tiny() -> tuple[Sam3TrackerVideoModel, Sam3TrackerVideoProcessor]:
    model = seeded_on_shared_vit(Sam3TrackerVideoModel, tiny_config(), _vision_encoder)
    return model, _processor(sam3.TINY_IMAGE_SIZE)


def build_random() -> tuple[Sam3TrackerVideoModel, Sam3TrackerVideoProcessor]:
    return seeded_on_shared_vit(Sam3TrackerVideoModel, random_config(), _vision_encoder), _processor(SAM3_IMAGE_SIZE)


def _vision_encoder(model: Sam3TrackerVideoModel) -> Sam3VisionModel:
    return model.vision_encoder


class Sam3TrackerClipSession(ClipSession, Sam3TrackerVideoInferenceSession):
    """SAM 3 tracker's inference session, told the clip's length."""


class Sam3TrackerVideoPropagator(Sam2VideoPropagator, CachedVision):
    """Sam2VideoPropagator over SAM 3's tracker: the same streaming and pruning, since the tracker stores the same
    per-frame outputs (pred_masks, high_res_masks, object_pointer, object_score_logits, maskmem_features,
    maskmem_pos_enc; checked in tests). Sizes for the memory bound: S = 1008 real / 112 tiny, feature grid S / 14
    (72 x 72 real), so a kept memory frame costs about 2 MB per object on the real face (64 x 72 x 72 bf16 features
    + float32 position encoding).

    Each frame's ViT output comes through `vision_cache` (by default one of its own, of VISION_CACHE_FRAMES;
    load_sam3_video gives the one the checkpoint's SAM 3 models share): the frames SAM 3's detector grounded are not
    encoded again, nor are the frames of an earlier track when a refine round tracks other boxes. The tracker's
    vision encoder is changed for the length of each frame's forward: one call at a time per propagator.
    """

    session_class = Sam3TrackerClipSession

    def __init__(
        self,
        spec: ModelSpec,
        model: Sam3TrackerVideoModel,
        processor: Sam3TrackerVideoProcessor,
        device: str,
        vision_cache: Sam3VisionCache | None = None,
    ) -> None:
        super().__init__(spec, model, processor, device)
        self._use_vision_cache(processor, vision_cache)

    def _encoding(self, image: Image.Image) -> contextlib.AbstractContextManager[None]:
        # The tracker's get_image_features calls its vision encoder, then projects two FPN levels for its mask
        # decoder: only the encoder call is answered from the cache.
        encoder = self.model.vision_encoder
        return self.vision_cache.answering(encoder, "forward", encoder, self._picture(image))


def load_sam3_video(spec: ModelSpec, device: str) -> Sam3TrackerVideoPropagator:
    """SAM 3's tracker as a propagator for `spec` on `device`, its ViT shared with the checkpoint's other SAM 3 models
    (sam3_vision): float32 weights unless spec.dtype says otherwise, each frame's forward under bfloat16 autocast on
    CUDA."""
    pretrained = (Sam3TrackerVideoModel.from_pretrained, Sam3TrackerVideoProcessor.from_pretrained)
    model, processor, cache = load_sharing_vision(spec, device, pretrained, build_tiny, build_random, _vision_encoder)
    return Sam3TrackerVideoPropagator(spec, model, processor, device, cache)
