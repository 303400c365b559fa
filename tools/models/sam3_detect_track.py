"""SAM 3's video model (transformers Sam3VideoModel): text prompts -> every instance they name, detected on every
frame and tracked through the clip, with stable object ids.

The sam3 profile's video mode. Each frame runs SAM 3's detector for every prompt and its tracker for the objects
already found; detections matched to no track start new objects, tracks unmatched for long are dropped (SAM 3's
"hotstart" heuristics, which hold a frame's answer back until `hotstart_delay` = 15 later frames were seen), and
high-confidence detections recondition the tracker's memory every 16 frames. One forward of the shared ViT per
frame serves both. transformers documents this as `Sam3VideoModel.from_pretrained("facebook/sam3")` with
`Sam3VideoProcessor`; that is what the `real` face loads. `tiny` builds a small seeded model (the tiny SAM 3
detector widened to the tiny tracker's memory width, 112 px) with a 112 px processor and the in-memory CLIP
tokenizer; `random` builds facebook/sam3's architecture (detector and tracker, 1008 px) with random weights.

Frames STREAM, as in sam2_video: each is decoded, preprocessed and added to the session only when it is processed,
the session is told the clip's length (transformers' whole-video code path, as `propagate_in_video_iterator` runs
it, hotstart included), and after each frame what SAM 3 will not read again is dropped (`_release`), so memory is
bounded by the tracker's memory window and the hotstart delay, not by the clip's length.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Sam3VideoConfig, Sam3VideoModel, Sam3VideoProcessor, Sam3VisionModel
from transformers.models.sam3_video.modeling_sam3_video import (
    Sam3VideoInferenceSession,
    Sam3VideoSegmentationOutput,
)

from tools.frames import FrameRef, load_frame
from tools.models import sam3, sam3_video
from tools.models.base import ModelSpec
from tools.models.precision import scoped_autocast
from tools.models.sam2_video import TINY_MEMORY_WIDTH, ClipSession, StreamingVideoAdapter
from tools.models.sam3_vision import CachedVision, Sam3VisionCache, load_sharing_vision, seeded_on_shared_vit
from tools.video_segmentation import VideoInstances


def tiny_config() -> Sam3VideoConfig:
    """The tiny SAM 3 detector (sam3.tiny_config) TINY_MEMORY_WIDTH wide, since the video model feeds the
    detector's FPN to the tracker, with sam3_video's tiny tracker; 112 px, low-res masks on the 32 x 32 grid."""
    return Sam3VideoConfig(
        detector_config=sam3.tiny_config(TINY_MEMORY_WIDTH),
        tracker_config=sam3_video.tiny_config(),
        low_res_mask_size=4 * (sam3.TINY_IMAGE_SIZE // 14),
    )


def random_config() -> Sam3VideoConfig:
    """facebook/sam3 as a video model: its detector (sam3.random_config) and tracker (sam3_video.random_config),
    1008 px, 288 x 288 low-res masks, and transformers 5.24's Sam3VideoConfig defaults for the association and
    hotstart heuristics (what convert_sam3_video_to_hf.py writes into that checkpoint)."""
    return Sam3VideoConfig(
        detector_config=sam3.random_config(),
        tracker_config=sam3_video.random_config(),
        low_res_mask_size=sam3_video.SAM3_IMAGE_SIZE * 2 // 7,
    )


def _processor(side: int) -> Sam3VideoProcessor:
    """Real Sam3VideoProcessor as facebook/sam3 ships it: frames resized to side x side, mean / std 0.5; prompts
    through the in-memory CLIP tokenizer (padded to 32 tokens by the processor)."""
    return Sam3VideoProcessor(
        image_processor=sam3._processor(side).image_processor,
        video_processor=sam3_video.frames_processor(side),
        tokenizer=sam3.clip_tokenizer(),
    )


def build_tiny() -> tuple[Sam3VideoModel, Sam3VideoProcessor]:
    return seeded_on_shared_vit(Sam3VideoModel, tiny_config(), _vision_encoder), _processor(sam3.TINY_IMAGE_SIZE)


def build_random() -> tuple[Sam3VideoModel, Sam3VideoProcessor]:
    model = seeded_on_shared_vit(Sam3VideoModel, random_config(), _vision_encoder)
    return model, _processor(sam3_video.SAM3_IMAGE_SIZE)


def _vision_encoder(model: Sam3VideoModel) -> Sam3VisionModel:
    return model.detector_model.vision_encoder


class Sam3DetectTrackSession(ClipSession, Sam3VideoInferenceSession):
    """SAM 3 video model's inference session, told the clip's length."""


class Sam3VideoSegmenter(StreamingVideoAdapter, CachedVision):
    """VideoSegmenter protocol (tools/video_segmentation.py) over Sam3VideoModel.

    What stays in memory during segment_video(), whatever the clip's length (N objects; the tracker's M = 7 memory
    frames, P = 16 object pointers, C = 4 conditioning frames in attention; hotstart delay D = 15):
    - one decoded frame at a time, and its pixels (3 x S x S, S = 1008 real / 112 tiny) while its forward runs;
    - the last frame's vision features (transformers' cache of one);
    - per object: the outputs of the last P frames (object pointers; memory features for the last M), and of its
      conditioning frames (where it was first found or reconditioned) the C latest plus those within P frames;
    - the answers of the last D frames, held back until hotstart has judged them (N low-res masks each).
    The conditioning frames dropped are those Meta's SAM 3 tracker never reads again going forward: it attends to
    the C closest conditioning frames and takes object pointers from them only. transformers takes pointers from
    every conditioning frame instead, so on a clip whose objects gather more than C conditioning frames older than
    P frames the two differ; before that, pruning is exact (tested against the unpruned session).

    Across calls, frames' ViT outputs are kept in `vision_cache` (by default one of its own, of
    VISION_CACHE_FRAMES; load_sam3_video_segmenter gives the one the checkpoint's SAM 3 models share), so a refine
    round over the same frames skips the ViT. The model is changed for the length of each frame's forward
    (thresholds, where vision features come from): one call at a time per adapter.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: Sam3VideoModel,
        processor: Sam3VideoProcessor,
        device: str,
        vision_cache: Sam3VisionCache | None = None,
    ) -> None:
        super().__init__(spec, model, processor, device)
        self._use_vision_cache(processor, vision_cache)

    def segment_video(
        self, frames: Sequence[FrameRef], prompts: Sequence[str], threshold: float, max_side: int | None = None
    ) -> Iterator[VideoInstances]:
        """Every instance of `prompts` on each of `frames` (FrameRef.index order), one VideoInstances per frame.

        threshold: SAM 3's detection threshold (score = query x presence probability); a detection starts a new
        object at threshold + the checkpoint's margin between the two (0.7 - 0.5 for facebook/sam3), capped at 1.
        Frames are decoded with the longer side at most `max_side` px. Instances are in object-id order; masks are
        at each frame's original size, cut at logit 0, made non-overlapping within a prompt as SAM 3 does. No
        prompt, or no frame: nothing is run. A repeated prompt is one prompt (transformers' add_prompt).
        """
        refs = list(frames)
        if not prompts:
            for ref in refs:
                yield _no_instances(ref)
            return
        session = Sam3DetectTrackSession(
            len(refs),
            inference_device=self.device,
            inference_state_device=self.device,
            video_storage_device=self.device,
            dtype=self.dtype,
        )
        self.processor.add_text_prompt(session, list(prompts))
        pending: deque[tuple[FrameRef, Sam3VideoSegmentationOutput]] = deque()
        hold = max(self.model.hotstart_delay, 1)
        for pos, ref in enumerate(refs):
            out = self._step(session, ref, pos, threshold, max_side)
            session.hotstart_removed_obj_ids.update(out.removed_obj_ids)
            self._record(session)  # before pruning: the most the session holds at any time
            if self.prune:
                _release(session, pos, self.model.config.tracker_config)
            pending.append((ref, out))
            # As transformers' propagate_in_video_iterator: a frame's answer waits until hotstart has seen the
            # frames after it, so tracks it removes are hidden on the frames already buffered too.
            ready = len(pending) if pos == len(refs) - 1 else len(pending) - hold + 1
            for _ in range(max(ready, 0)):
                yield self._instances(session, *pending.popleft())

    def _step(
        self, session: Sam3DetectTrackSession, ref: FrameRef, pos: int, threshold: float, max_side: int | None
    ) -> Sam3VideoSegmentationOutput:
        """One frame: decode, preprocess, detect every prompt and track every object."""
        start = time.perf_counter()
        image, _ = load_frame(ref, max_side)
        picture = self._picture(image)
        pixels = self.processor(images=image, return_tensors="pt", device=self.device)["pixel_values"][0]
        del image  # at most one decoded frame is alive at a time
        session.add_new_frame(pixels, pos)
        detector = self.model.detector_model
        with (
            torch.inference_mode(),
            scoped_autocast(self.device),
            _thresholds(self.model, threshold),
            # Sam3VideoModel encodes each frame once, through its detector, for the detector and the tracker.
            self.vision_cache.answering(detector, "get_vision_features", detector.vision_encoder, picture),
        ):
            # Naming the frame index (not transformers' `frame=` streaming call) runs the whole-video code path:
            # hotstart removals on, object-pointer time offsets normalised by min(clip length, P) as in Meta's.
            out = self.model(inference_session=session, frame_idx=pos)
        self.stats.frames += 1
        self.stats.seconds += time.perf_counter() - start
        return out

    def _instances(
        self, session: Sam3DetectTrackSession, ref: FrameRef, out: Sam3VideoSegmentationOutput
    ) -> VideoInstances:
        """A frame's model output as VideoInstances at the frame's original size (transformers' post-processing:
        removed and suppressed tracks hidden, masks upsampled on the model's device)."""
        start = time.perf_counter()
        post = self.processor.postprocess_outputs(session, out, original_sizes=[[ref.height, ref.width]])
        ids = [int(i) for i in post["object_ids"].tolist()]
        prompt_of = {obj_id: text for text, obj_ids in post["prompt_to_obj_ids"].items() for obj_id in obj_ids}
        scores = post["scores"].float().cpu().numpy()
        tracked = out.obj_id_to_tracker_score or {}
        tracker_scores = np.array([tracked.get(i, s) for i, s in zip(ids, scores, strict=True)], np.float32)
        masks = post["masks"].cpu().numpy()  # bool (N, H, W), N = 0 included
        self.stats.seconds += time.perf_counter() - start
        return VideoInstances(ref.index, ids, [prompt_of[i] for i in ids], masks, scores, tracker_scores)


def _no_instances(ref: FrameRef) -> VideoInstances:
    empty = np.zeros((0,), np.float32)
    return VideoInstances(ref.index, [], [], np.zeros((0, ref.height, ref.width), bool), empty, empty.copy())


@contextlib.contextmanager
def _thresholds(model: Sam3VideoModel, threshold: float) -> Iterator[None]:
    """The model's detection and new-object thresholds set from `threshold` for the block (it reads them from
    itself), keeping the checkpoint's margin between them; restored afterwards."""
    config = model.config
    margin = max(config.new_det_thresh - config.score_threshold_detection, 0.0)
    saved = (model.score_threshold_detection, model.new_det_thresh)
    model.score_threshold_detection, model.new_det_thresh = threshold, min(threshold + margin, 1.0)
    try:
        yield
    finally:
        model.score_threshold_detection, model.new_det_thresh = saved


# What each stored per-frame output holds (transformers 5.24): pred_masks (low-res logits), high_res_masks,
# object_pointer, object_score_logits, maskmem_features, maskmem_pos_enc.
_MEMORY_KEYS = ("maskmem_features", "maskmem_pos_enc")
_MASK_KEYS = ("pred_masks", "high_res_masks")  # read again only while their own frame is processed


def _release(session: Sam3DetectTrackSession, done: int, tracker: Any) -> None:
    """Drop what SAM 3 will not read again after frame position `done` (frames go forward only).

    Frame t reads: memories of frames t-1..t-(M-1) (conditioning or not); object pointers of frames t-1..t-(P-1)
    and of conditioning frames; memories of the C closest conditioning frames (the C latest, going forward).
    Per-frame bookkeeping (tracker scores, suppressed ids) is read for the frame being processed only.
    """
    memories, pointers = tracker.num_maskmem, tracker.max_object_pointers_in_encoder
    kept_conditioning = tracker.max_cond_frame_num
    session.processed_frames.pop(done, None)  # pixels: read by this frame's forward only
    for per_frame in (session.obj_id_to_tracker_score_frame_wise, session.suppressed_obj_ids):
        for frame in [f for f in per_frame if f < done]:
            del per_frame[frame]  # transformers deep-copies the tracker scores every frame: keep them short
    for obj_idx, outputs in session.output_dict_per_obj.items():
        session.frames_tracked_per_obj[obj_idx].pop(done, None)
        session.mask_inputs_per_obj[obj_idx].pop(done, None)  # a new object's mask prompt, read on its frame
        conditioning, tracked = outputs["cond_frame_outputs"], outputs["non_cond_frame_outputs"]
        for entry in (conditioning.get(done), tracked.get(done)):
            if entry is not None:
                _drop(entry, _MASK_KEYS)
        latest = set(sorted(conditioning)[-kept_conditioning:]) if kept_conditioning > 0 else set(conditioning)
        for frame in list(conditioning):
            if frame in latest:
                continue
            if done - frame >= pointers:
                del conditioning[frame]
            elif done - frame >= memories:
                _drop(conditioning[frame], _MEMORY_KEYS)
        for frame in list(tracked):
            if done - frame >= pointers:
                del tracked[frame]
            elif done - frame >= memories:
                _drop(tracked[frame], _MEMORY_KEYS)


def _drop(entry: dict, keys: Sequence[str]) -> None:
    for key in keys:
        entry.pop(key, None)


def load_sam3_video_segmenter(spec: ModelSpec, device: str) -> Sam3VideoSegmenter:
    """SAM 3's video model as a video segmenter for `spec` on `device`, its ViT shared with the checkpoint's other
    SAM 3 models (sam3_vision): float32 weights unless spec.dtype says otherwise, bfloat16 autocast per frame on
    CUDA."""
    pretrained = (Sam3VideoModel.from_pretrained, Sam3VideoProcessor.from_pretrained)
    model, processor, cache = load_sharing_vision(spec, device, pretrained, build_tiny, build_random, _vision_encoder)
    return Sam3VideoSegmenter(spec, model, processor, device, cache)
