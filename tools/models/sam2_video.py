"""SAM2 video propagation (transformers Sam2VideoModel): boxes on one seed frame -> masks on every frame.

Faces: `real` loads facebook/sam2.1-hiera-tiny / -small / -base-plus / -large (or a local folder) with its
Sam2VideoProcessor; `tiny` builds a small seeded model with a 128 px processor in memory (the image adapter's tiny
Hiera, widened where the memory path needs it); `random` builds the real sam2.1 architecture of the model id (tiny,
small, base-plus or large) with random weights (cost measurements).

Frames STREAM: each is decoded, preprocessed and added to the inference session only when it is tracked, and the
session is a transformers Sam2VideoInferenceSession that is told the clip's length up front (so results equal
transformers' whole-video API, see `ClipSession`). transformers keeps every added frame and every per-frame
output in the session, so after each frame this adapter drops what SAM2 can no longer read (see
`Sam2VideoPropagator`): memory held is bounded by the model's memory window, not by the video's length.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    PreTrainedModel,
    ProcessorMixin,
    Sam2Config,
    Sam2VideoConfig,
    Sam2VideoModel,
    Sam2VideoProcessor,
)
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession
from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

from tools.frames import FrameRef, load_frame
from tools.models import sam2
from tools.models.base import ModelSpec
from tools.models.precision import scoped_autocast
from tools.models.registry import model_for_face
from tools.models.tiny_text import seeded_model
from tools.models.video_batching import track_frame

TINY_MEMORY_WIDTH = 128
"""Tiny face's FPN / prompt / decoder / memory-attention width. transformers' Sam2VideoModel needs
fpn_hidden_size == memory_attention_hidden_size, a multiple of 64 and > 64 (its object pointers are split into
64-wide memory tokens), so the image adapter's 32-wide tiny heads are widened here."""

# The memory path of every sam2.1 checkpoint (Meta's configs/sam2.1/sam2.1_hiera_{t,s,b+,l}.yaml share it): 7 memory
# frames (1 conditioning + 6 recent), object pointers from up to 16 frames, RoPE memory attention 256 wide x 4
# layers on the 64 x 64 feature grid of a 1024 px input, 64-channel memories, sigmoid 20 / -10 on masks fed to the
# memory encoder, multimask on the seed frame and while tracking. These equal transformers 5.24's Sam2VideoConfig
# defaults; written out so no file is needed and a transformers default change cannot silently alter the face.
SAM21_MEMORY: dict[str, Any] = {
    "num_maskmem": 7,
    "max_object_pointers_in_encoder": 16,
    "max_cond_frame_num": -1,
    "sigmoid_scale_for_mem_enc": 20.0,
    "sigmoid_bias_for_mem_enc": -10.0,
    "enable_occlusion_spatial_embedding": True,
    "enable_temporal_pos_encoding_for_object_pointers": True,
    "multimask_output_in_sam": True,
    "multimask_min_pt_num": 0,
    "multimask_max_pt_num": 1,
    "multimask_output_for_tracking": True,
    "memory_attention_hidden_size": 256,
    "memory_attention_num_layers": 4,
    "memory_attention_num_attention_heads": 1,
    "memory_attention_downsample_rate": 1,
    "memory_attention_feed_forward_hidden_size": 2048,
    "memory_attention_rope_feat_sizes": [64, 64],
    "memory_encoder_hidden_size": 256,
    "memory_encoder_output_channels": 64,
    "mask_downsampler_embed_dim": 256,
    "memory_fuser_embed_dim": 256,
    "memory_fuser_intermediate_dim": 1024,
}


def _video_config(base: Sam2Config, image_size: int, **memory: Any) -> Sam2VideoConfig:
    """A Sam2VideoConfig with the image model `base`'s encoder, prompt encoder and mask decoder."""
    return Sam2VideoConfig(
        vision_config=base.vision_config,
        prompt_encoder_config=base.prompt_encoder_config.to_dict(),
        mask_decoder_config=base.mask_decoder_config.to_dict(),
        image_size=image_size,
        **{**SAM21_MEMORY, **memory},
    )


def tiny_config() -> Sam2VideoConfig:
    """sam2.tiny_config()'s 128 px Hiera (12-24-48-96 channels) with 128-wide FPN, prompt encoder, mask decoder and
    one memory-attention layer on its 8 x 8 top feature grid; 7 memory frames and 16 pointers as the real models
    (so the memory window the propagator keeps is the real one). memory_encoder_output_channels stays 64."""
    base = sam2.tiny_config()
    base.vision_config.fpn_hidden_size = TINY_MEMORY_WIDTH
    base.prompt_encoder_config.hidden_size = TINY_MEMORY_WIDTH
    base.mask_decoder_config.hidden_size = TINY_MEMORY_WIDTH
    return _video_config(base, sam2.TINY_IMAGE_SIZE, **tiny_memory(sam2.TINY_IMAGE_SIZE // 16))


def tiny_memory(grid: int) -> dict[str, Any]:
    """The tiny faces' memory path (SAM2's and SAM 3's trackers share its code): TINY_MEMORY_WIDTH wide, one
    memory-attention layer on the grid x grid top feature map, memory fuser and mask downsampler as wide; the
    memory-frame and pointer counts are left to the real values."""
    width = TINY_MEMORY_WIDTH
    return {
        "memory_attention_hidden_size": width,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 2 * width,
        "memory_attention_rope_feat_sizes": [grid, grid],
        "memory_encoder_hidden_size": width,
        "mask_downsampler_embed_dim": width,
        "memory_fuser_embed_dim": width,
        "memory_fuser_intermediate_dim": 2 * width,
    }


def random_config(model_id: str = "facebook/sam2.1-hiera-tiny", image_size: int = 1024) -> Sam2VideoConfig:
    """The sam2.1 checkpoint's architecture for video: sam2.random_config()'s image parts plus SAM21_MEMORY. An
    `image_size` other than 1024 (px, a multiple of 64) scales the input and the memory attention's feature grid
    with it, for cheaper cost measurements."""
    grid = image_size // 16
    return _video_config(
        sam2.random_config(model_id, image_size), image_size, memory_attention_rope_feat_sizes=[grid, grid]
    )


def _processor(side: int) -> Sam2VideoProcessor:
    """Real Sam2VideoProcessor resizing frames to side x side (ImageNet mean/std), boxes normalised to `side`."""
    return Sam2VideoProcessor(
        image_processor=sam2._processor(side).image_processor,
        video_processor=Sam2VideoVideoProcessor(size={"height": side, "width": side}),
    )


def build_tiny() -> tuple[Sam2VideoModel, Sam2VideoProcessor]:
    return seeded_model(Sam2VideoModel, tiny_config()), _processor(sam2.TINY_IMAGE_SIZE)


def build_random(model_id: str, image_size: int = 1024) -> tuple[Sam2VideoModel, Sam2VideoProcessor]:
    return seeded_model(Sam2VideoModel, random_config(model_id, image_size)), _processor(image_size)


# ---------------------------------------------------------------------------------------------------------------
# Propagation


class ClipSession:
    """Mixin for a transformers video inference session fed one frame at a time that still knows the clip's length.

    transformers reads the video's length as the number of frames the session holds; this session holds one (or,
    unpruned, those seen so far), so the length is given up front. It bounds object-pointer look-back (frames past
    either end do not exist) and its time normalisation, exactly as when the whole video is given. Mixed into each
    tracker's own session class (Sam2VideoInferenceSession here, Sam3TrackerVideoInferenceSession in sam3_video).
    """

    def __init__(self, num_frames: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clip_length = num_frames
        self.processed_frames: dict = {}

    @property
    def num_frames(self) -> int:
        return self._clip_length


class Sam2ClipSession(ClipSession, Sam2VideoInferenceSession):
    """SAM2's inference session, told the clip's length."""


@dataclass
class PropagationStats:
    """Running counters over all propagate() calls: frames produced, seconds in the model (load + forward +
    post-processing), and the most tensor bytes / pixel frames an inference session held (measured right after
    each frame's forward, before pruning)."""

    frames: int = 0
    seconds: float = 0.0
    peak_session_bytes: int = 0
    peak_session_frames: int = 0


class StreamingVideoAdapter:
    """What a video model adapter streaming frames through a transformers inference session holds: its model (in
    eval mode), processor and device, running PropagationStats, and whether it prunes the session after each
    frame."""

    def __init__(self, spec: ModelSpec, model: PreTrainedModel, processor: ProcessorMixin, device: str) -> None:
        self.spec = spec
        self.model = model.eval()
        self.processor = processor
        self.device = device
        self.stats = PropagationStats()
        self.prune = True
        """False keeps transformers' full session (every frame's outputs): for checking that pruning is exact."""

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _record(self, session: Any) -> None:
        """Count the session's tensor bytes and pixel frames into the peaks."""
        self.stats.peak_session_bytes = max(self.stats.peak_session_bytes, session_bytes(session))
        self.stats.peak_session_frames = max(self.stats.peak_session_frames, len(session.processed_frames))


class BoxTracker:
    """What every box-seeded tracker shares (the Propagator contract of tools/propagation.py): prompts checked at the
    call, and no objects answered without the model. Subclasses track N >= 1 objects in `_track`."""

    def propagate(
        self,
        frames: Sequence[FrameRef],
        seed_frame: int,
        boxes: np.ndarray,
        obj_ids: Sequence[int],
        max_side: int | None = None,
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Track N objects through `frames` (FrameRef.index strictly increasing; loaded lazily, one at a time).

        seed_frame: the FrameRef.index whose frame carries the prompts; boxes: (N, 4) xyxy px of that frame at its
        original size; obj_ids: N distinct ints naming the objects; max_side: decode frames with the longer side
        at most this (px; the model resizes to S x S anyway, so this only bounds decoding cost).
        Yields (frame index, bool masks (N, H, W) at that frame's original size, float32 object-presence scores (N,)
        = sigmoid of SAM2's object score logit) for every frame exactly once: the seed frame, the later frames in
        order, then the earlier frames from the seed backwards. Masks and scores are in obj_ids order. N = 0 yields
        empty arrays for every frame without running the model.
        """
        refs = list(frames)
        # Checked here, run below: bad prompts fail at the call, not at the first next().
        seed_pos, boxes, ids = _check_prompts(refs, seed_frame, boxes, obj_ids)
        if not ids:
            return _no_objects(refs)
        return self._track(refs, seed_pos, boxes, ids, max_side)

    def _track(
        self, refs: list[FrameRef], seed_pos: int, boxes: np.ndarray, ids: list[int], max_side: int | None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """propagate()'s answers for N >= 1 checked prompts; seed_pos: the seed frame's position in refs."""
        raise NotImplementedError


def _no_objects(refs: Sequence[FrameRef]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    for ref in refs:
        yield ref.index, np.zeros((0, ref.height, ref.width), bool), np.zeros((0,), np.float32)


class Sam2VideoPropagator(StreamingVideoAdapter, BoxTracker):
    """Seeds objects with boxes on one frame and tracks them forward to the last frame, then backward to the first.

    What stays in memory during propagate(), whatever the video's length (M = num_maskmem = 7 and
    P = max_object_pointers_in_encoder = 16 for every sam2.1 checkpoint; N objects):
    - one decoded frame (PIL, longer side <= max_side) at a time, released once turned into model pixels;
    - that frame's pixel tensor (3 x S x S, S = 1024 real / 128 tiny) while its forward runs, then dropped;
    - the vision features of the last frame only (transformers' cache, max_vision_features_cache_size=1);
    - per object: the seed frame's output (low-res mask logits S/4 x S/4, object pointer, 64-channel memory on the
      S/16 grid) and, for the frames within P of the current frame or of the seed frame (the backward pass reads the
      forward pass's frames next to the seed, as Meta's predictor does), their object pointers; those within M also
      keep their memory features. Everything else (high-res masks, tracked low-res masks, older frames) is dropped.
    So a session holds at most about 2 P pointers and 2 M memories per object. Real faces: about 100 MB fixed (one
    frame's pixels and cached multi-scale features with their position encodings) plus about 1.5 MB per object per
    kept memory frame (64 x 64 x 64 bf16 features + float32 position encoding), i.e. <= ~25 MB per object.
    The caller receives masks at original size frame by frame and decides what to keep.
    """

    session_class: type[ClipSession] = Sam2ClipSession
    """The model's inference session with the clip's length (a subclass running another tracker names its own)."""

    def __init__(self, spec: ModelSpec, model: Sam2VideoModel, processor: Sam2VideoProcessor, device: str) -> None:
        super().__init__(spec, model, processor, device)
        self.batch_objects = True
        """False tracks objects one at a time (transformers' forward) on every frame: for checks and benchmarks of
        video_batching.track_frame, which runs a tracked frame's objects as one batch."""

    def _track(
        self, refs: list[FrameRef], seed_pos: int, boxes: np.ndarray, ids: list[int], max_side: int | None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        seed = refs[seed_pos]
        session = self.session_class(len(refs), inference_device=self.device, dtype=self.dtype)
        # Boxes are normalised by the seed frame's ORIGINAL size; the decoded (maybe downscaled) frame keeps its
        # aspect ratio and is resized to S x S by the processor, so the prompt lands on the same pixels.
        self.processor.add_inputs_to_inference_session(
            session,
            frame_idx=seed_pos,
            obj_ids=ids,
            input_boxes=[boxes.tolist()],
            original_size=(seed.height, seed.width),
        )
        forward = [(pos, False) for pos in range(seed_pos, len(refs))]
        backward = [(pos, True) for pos in range(seed_pos - 1, -1, -1)]
        for pos, reverse in forward + backward:
            masks, scores = self._step(session, refs[pos], pos, reverse, max_side)
            self._record(session)  # before pruning: the most the session holds at any time
            if self.prune:
                _release(session, pos, seed_pos, self.model.config)
            yield refs[pos].index, masks, scores

    def _step(
        self, session: Sam2VideoInferenceSession, ref: FrameRef, pos: int, reverse: bool, max_side: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame: decode, preprocess, track all objects, upsample masks to the frame's original size."""
        start = time.perf_counter()
        image, _ = load_frame(ref, max_side)
        pixels = self.processor(images=image, return_tensors="pt", device=self.device)["pixel_values"][0]
        encoding = self._encoding(image)
        del image  # the decoded frame is not needed past preprocessing: at most one is alive at a time
        session.add_new_frame(pixels, pos)
        with torch.inference_mode(), scoped_autocast(self.device), encoding:
            # Not transformers' `frame=` streaming call: that one normalises object-pointer time offsets by 16
            # frames whatever the clip's length, while Meta's predictor (and transformers with a whole video) uses
            # min(clip length, 16). Adding the frame ourselves and naming its index runs the whole-video code path.
            if self.batch_objects:  # all objects in one pass on tracked frames; otherwise the same forward
                out = track_frame(self.model, session, pos, reverse)
            else:
                out = self.model(inference_session=session, frame_idx=pos, reverse=reverse)
        # pred_masks (N, 1, S/4, S/4) logits -> (N, H, W) bool at the frame's original size (threshold 0).
        # Upsampled and thresholded on the model's device (see Sam2Segmenter): only the bool masks travel.
        masks = self.processor.post_process_masks([out.pred_masks.float()], [[ref.height, ref.width]])[0][:, 0]
        masks = masks.cpu().numpy()
        scores = torch.sigmoid(out.object_score_logits.float().cpu()).reshape(-1).numpy().astype(np.float32)
        self.stats.frames += 1
        self.stats.seconds += time.perf_counter() - start
        return masks.astype(bool, copy=False), scores

    def _encoding(self, image: Image.Image) -> contextlib.AbstractContextManager[None]:
        """How the forward of the frame decoded as `image` gets its vision features: the tracker encodes its pixels
        (a subclass may answer from elsewhere)."""
        return contextlib.nullcontext()


def _check_prompts(
    refs: Sequence[FrameRef], seed_frame: int, boxes: np.ndarray, obj_ids: Sequence[int]
) -> tuple[int, np.ndarray, list[int]]:
    """A propagator's prompts checked: (the seed frame's position in `refs`, boxes as float32 (N, 4), the N ids as
    ints). ValueError when the frames are not in increasing index order, the seed is not among them, the boxes are
    malformed, or the ids are not N distinct values."""
    indices = [ref.index for ref in refs]
    if any(b <= a for a, b in itertools.pairwise(indices)):
        raise ValueError("frames must be in strictly increasing FrameRef.index order")
    if seed_frame not in indices:
        raise ValueError(f"seed frame {seed_frame} is not among the frames {indices[:3]}...{indices[-3:]}")
    boxes = sam2._check_boxes(boxes)
    ids = [int(i) for i in obj_ids]
    if len(ids) != len(boxes) or len(set(ids)) != len(ids):
        raise ValueError(f"need {len(boxes)} distinct obj_ids for {len(boxes)} boxes, got {ids}")
    return indices.index(seed_frame), boxes, ids


# What each stored per-frame output holds (transformers 5.24): pred_masks (low-res logits), high_res_masks,
# object_pointer, object_score_logits, maskmem_features, maskmem_pos_enc.
_MEMORY_KEYS = ("maskmem_features", "maskmem_pos_enc")
_SPENT_KEYS = ("high_res_masks",)  # read only by the memory encoder, inside the same forward
_TRACKED_SPENT_KEYS = ("pred_masks",)  # a tracked frame's masks are returned once and never read again


def _release(session: Sam2VideoInferenceSession, done: int, seed: int, config: Sam2VideoConfig) -> None:
    """Drop what SAM2 will not read again after frame `done` (positions): the frame's pixels, and the outputs
    release_outputs names. transformers keeps all of these for the whole video otherwise."""
    session.processed_frames.pop(done, None)  # pixels: read by this frame's forward only
    release_outputs(
        session.output_dict_per_obj,
        session.frames_tracked_per_obj,
        done,
        seed,
        config.num_maskmem,
        config.max_object_pointers_in_encoder,
    )


def release_outputs(
    outputs_per_obj: dict[int, dict[str, dict[int, dict]]],
    tracked_per_obj: dict[int, dict[int, Any]],
    done: int,
    seed: int,
    memories: int,
    pointers: int,
) -> None:
    """Drop the per-frame outputs SAM2 will not read again after frame `done` (positions; SAM2's memory path, the
    same in transformers' session and Meta's inference state: per object, conditioning and tracked frames' outputs
    by frame, and the frames tracked so far).

    Frame t reads memories of frames t -/+ 1..memories-1 and object pointers of frames t -/+ 1..pointers-1 (the
    sign follows the direction), plus every conditioning (seed) output; the backward pass starts next to the seed,
    so frames near the seed stay too.
    """
    for obj_idx, outputs in outputs_per_obj.items():
        # Only consulted for prompts added to an already-tracked frame, which propagation never does.
        tracked_per_obj[obj_idx].pop(done, None)
        for entry in outputs["cond_frame_outputs"].values():
            _drop(entry, _SPENT_KEYS)
        tracked = outputs["non_cond_frame_outputs"]
        if done in tracked:
            _drop(tracked[done], _SPENT_KEYS + _TRACKED_SPENT_KEYS)
        for frame in list(tracked):
            distance = min(abs(frame - done), abs(frame - seed))
            if distance >= pointers:
                del tracked[frame]
            elif distance >= memories:
                _drop(tracked[frame], _MEMORY_KEYS)


def _drop(entry: dict, keys: Sequence[str]) -> None:
    for key in keys:
        entry.pop(key, None)


def session_bytes(session: Sam2VideoInferenceSession) -> int:
    """Bytes of the distinct tensor storages an inference session references (frames, cache, inputs, outputs)."""
    return tensor_bytes(
        [
            session.processed_frames,
            session.cache._vision_features,
            session.point_inputs_per_obj,
            session.mask_inputs_per_obj,
            session.output_dict_per_obj,
        ]
    )


def tensor_bytes(value: Any) -> int:
    """Bytes of the distinct tensor storages reachable from `value` through dicts, lists and tuples."""
    storages: dict[int, int] = {}
    # An explicit stack, not a recursive closure: a closure naming itself is a reference cycle that would keep
    # this walk's objects alive until the next full garbage collection.
    stack: list[Any] = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple):
            stack.extend(value)
    return sum(storages.values())


def load_sam2_video(spec: ModelSpec, device: str) -> Sam2VideoPropagator:
    """SAM2's propagator for `spec` on `device` (registry.model_for_face's faces): float32 weights unless spec.dtype
    says otherwise, each frame's forward under bfloat16 autocast on CUDA."""
    pretrained = (Sam2VideoModel.from_pretrained, Sam2VideoProcessor.from_pretrained)
    model, processor, dtype = model_for_face(spec, device, pretrained, build_tiny, lambda: build_random(spec.model_id))
    return Sam2VideoPropagator(spec, model.to(device=device, dtype=dtype), processor, device)
