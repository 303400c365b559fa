"""One SAM2 video tracking step for all objects at once (transformers Sam2VideoModel / Sam3TrackerVideoModel).

transformers 5.24's `Sam2VideoModel.forward` runs memory attention and the mask decoder once per object with batch 1
(only the memory encoder is batched), because objects may carry different prompts. On a frame that is only tracked,
every object reads the same frame's features and, when the objects were seeded together, memories from the same
frames: Meta's SAM2 video predictor runs such a frame as one batch of N objects. `track_frame` does that, and stores
each object's output in the session exactly where and as transformers does, so later frames (batched or not) read
the same state. Everything else goes through the model's own forward unchanged.

Shapes: N objects, S = model.image_size px, F x F the top feature grid (S / 16 for SAM2, S / 14 for SAM 3's tracker),
C = model.hidden_dim, M = model.mem_dim.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.sam2_video.modeling_sam2_video import (
    NO_OBJ_SCORE,
    Sam2VideoInferenceSession,
    Sam2VideoModel,
    Sam2VideoSegmentationOutput,
)
from transformers.models.sam3_tracker_video.modeling_sam3_tracker_video import (
    Sam3TrackerVideoInferenceSession,
    Sam3TrackerVideoModel,
)

VideoTracker = Sam2VideoModel | Sam3TrackerVideoModel
"""Models sharing transformers' SAM2 video internals (sam3_tracker_video is a modular copy of sam2_video)."""
VideoSession = Sam2VideoInferenceSession | Sam3TrackerVideoInferenceSession

_MEMORY_KEYS = ("maskmem_features", "maskmem_pos_enc")


@dataclass
class _Memory:
    """What memory attention reads for N objects, stacked on the batch axis (dim 1 of every tensor).

    frames: (temporal offset, {maskmem_features: (F*F, N, M) bfloat16, maskmem_pos_enc: (F*F, N, M)} or None
    where no frame is held at that offset), as `_gather_memory_frame_outputs` lists them for one object;
    pointer_offsets: frame distances of the object pointers; pointers: one (N, 1, C) tensor per offset;
    max_pointers: the look-back that normalises those distances.
    """

    frames: list[tuple[int, dict[str, torch.Tensor] | None]]
    pointer_offsets: list[int]
    pointers: list[torch.Tensor]
    max_pointers: int


@torch.inference_mode()
def track_frame(
    model: VideoTracker, session: VideoSession, frame_idx: int, reverse: bool = False
) -> Sam2VideoSegmentationOutput:
    """`model(inference_session=session, frame_idx=frame_idx, reverse=reverse)`, batched over objects when it can be.

    The frame must already be in the session (as for that call). Batched when there are >= 2 objects, none has new
    prompts, `frame_idx` is no object's conditioning frame, and every object's memories and object pointers lie at
    the same frame distances (so objects prompted on different frames, whose pointers do not, are not batched);
    otherwise the model's forward runs. Returns the forward's output either way: pred_masks (N, 1, S/4, S/4) mask
    logits, object_score_logits (N, 1), in the session's object order (a Sam2VideoSegmentationOutput also for SAM 3's
    tracker: the fields are the same).
    """
    if not _batchable(model, session, frame_idx):
        return model(inference_session=session, frame_idx=frame_idx, reverse=reverse)
    # Batch 1: (F*F, 1, C) top level plus the finer levels; cached, so a fallback below does not encode it again.
    vision, positions = model._prepare_vision_features(session, frame_idx, batch_size=1)
    memory = _shared_memory(model, session, frame_idx, reverse, vision[-1].device)
    if memory is None:
        return model(inference_session=session, frame_idx=frame_idx, reverse=reverse)
    objects = list(range(session.get_obj_num()))
    pix_feat = _memory_conditioned_features(model, session, memory, vision[-1], positions[-1], len(objects))
    # Mirrors Sam2VideoModel._run_single_frame_inference: finer levels (H*W, 1, c) -> (1, c, H, W), one per object.
    high_res = [
        x.permute(1, 2, 0).view(x.size(1), x.size(2), *size).expand(len(objects), -1, -1, -1)
        for x, size in zip(vision[:-1], model.backbone_feature_sizes[:-1], strict=True)
    ]
    out = _decode(model, pix_feat, high_res, model._use_multimask(is_init_cond_frame=False, point_inputs=None))
    for i, obj_idx in enumerate(objects):
        current = {key: value[i : i + 1] for key, value in out.items()}  # transformers' per-object shapes
        session.store_output(obj_idx, frame_idx, output_value=current, is_conditioning_frame=False)
        session.frames_tracked_per_obj[obj_idx][frame_idx] = {"reverse": reverse}
    model._batch_encode_memories(
        inference_session=session,
        frame_idx=frame_idx,
        objects_needing_memory_encoding=objects,
        high_res_masks_for_memory=list(out["high_res_masks"].split(1)),
        object_score_logits_for_memory=list(out["object_score_logits"].split(1)),
        is_mask_from_pts_per_obj=[False] * len(objects),
    )
    return Sam2VideoSegmentationOutput(
        object_ids=session.obj_ids.copy(),
        pred_masks=out["pred_masks"],
        object_score_logits=out["object_score_logits"].squeeze(-1),
        frame_idx=frame_idx,
    )


def _batchable(model: VideoTracker, session: VideoSession, frame_idx: int) -> bool:
    """Whether forward would track every object on this frame from memory alone (no prompt, no stored output)."""
    outputs = [session.output_dict_per_obj[obj]["cond_frame_outputs"] for obj in range(session.get_obj_num())]
    return (
        len(outputs) >= 2
        and model.num_maskmem > 0  # a memory-less model has no memory path to batch
        and not session.obj_with_new_inputs  # forward runs the prompt path for those
        and all(frame_idx not in cond for cond in outputs)  # forward reuses a conditioning frame's stored output
    )


def _shared_memory(
    model: VideoTracker, session: VideoSession, frame_idx: int, reverse: bool, device: torch.device
) -> _Memory | None:
    """Every object's memory frames and object pointers for `frame_idx`, stacked; None unless every object holds them
    at the same frame distances. Those distances alone set the memories' temporal encodings and the pointers'
    positions, so objects that match may share one batch even if prompted on other frames; objects that do not
    would need memories of different lengths.

    transformers' `_gather_memory_frame_outputs` and `_get_object_pointers` read one object: called per object here.
    """
    objects = range(session.get_obj_num())
    frames = [model._gather_memory_frame_outputs(session, obj, frame_idx, reverse) for obj in objects]
    pointers = [
        model._get_object_pointers(session, obj, frame_idx, session.num_frames, device, reverse, streaming=False)
        for obj in objects
    ]
    frame_layouts = {tuple((offset, out is None) for offset, out in per_obj) for per_obj in frames}
    pointer_layouts = {(tuple(offsets), max_pointers) for offsets, _, max_pointers in pointers}
    if len(frame_layouts) > 1 or len(pointer_layouts) > 1:
        return None
    stacked_frames: list[tuple[int, dict[str, torch.Tensor] | None]] = []
    for per_offset in zip(*frames, strict=True):  # one (offset, output or None) per object, same offset
        offset, first = per_offset[0]
        if first is None:
            stacked_frames.append((offset, None))
        else:
            stacked_frames.append(
                (offset, {k: torch.cat([out[k] for _, out in per_offset], dim=1) for k in _MEMORY_KEYS})
            )
    offsets, _, max_pointers = pointers[0]
    # Each object's pointer is (1, 1, C): concatenated on dim 0, _process_object_pointers reads dim 0 of the
    # stack as its batch.
    stacked_pointers = [torch.cat(tokens, dim=0) for tokens in zip(*(tokens for _, tokens, _ in pointers), strict=True)]
    return _Memory(stacked_frames, offsets, stacked_pointers, max_pointers)


def _memory_conditioned_features(
    model: VideoTracker,
    session: VideoSession,
    memory: _Memory,
    vision: torch.Tensor,
    vision_positions: torch.Tensor,
    batch: int,
) -> torch.Tensor:
    """The frame's top-level features (F*F, 1, C) and their positions, attended to each of `batch` objects' memory:
    (N, C, F, F).

    Steps 2-5 of Sam2VideoModel._prepare_memory_conditioned_features on the stacked memory: its helpers for memory
    and pointer tokens are called as they are; the concatenation, memory attention and reshape are mirrored, since
    that function reads one object and its last reshape squeezes axis 1 of the memory attention's (1, N, F*F, C)
    output, which is the batch for N > 1.
    """
    height, width = model.backbone_feature_sizes[-1]
    memories, memory_positions = model._build_memory_attention_inputs(memory.frames, vision.device)
    num_pointer_tokens = 0
    if memory.pointers:
        pointers, pointer_positions = model._process_object_pointers(
            memory.pointer_offsets, memory.pointers, memory.max_pointers, batch, model.hidden_dim, vision.device
        )
        memories.append(pointers)
        memory_positions.append(pointer_positions)
        num_pointer_tokens = pointers.shape[0]
    fused = model.memory_attention(
        current_vision_features=vision.expand(-1, batch, -1),
        current_vision_position_embeddings=vision_positions.expand(-1, batch, -1),
        memory=torch.cat(memories, dim=0).to(dtype=session.dtype),
        memory_posision_embeddings=torch.cat(memory_positions, dim=0),
        num_object_pointer_tokens=num_pointer_tokens,
    )
    return fused.squeeze(0).transpose(1, 2).view(batch, model.hidden_dim, height, width)  # from (1, N, F*F, C)


def _decode(
    model: VideoTracker, pix_feat: torch.Tensor, high_res: list[torch.Tensor], multimask: bool
) -> dict[str, torch.Tensor]:
    """The mask decoder without prompts for N objects, each with its own memory-conditioned features.

    pix_feat: (N, C, F, F); high_res: the two finer feature levels, (N, c, 4F, 4F) and (N, c', 2F, 2F); multimask:
    pick the best of the three multimask outputs by predicted IoU (else the single-mask output).
    Returns the per-frame output transformers stores, batched: pred_masks (N, 1, S/4, S/4) logits, object_pointer
    (N, 1, C), high_res_masks (N, 1, S, S) logits, object_score_logits (N, 1, 1).

    Mirrors Sam2VideoModel._single_frame_forward given image_embeddings and no prompt: its best-mask pick indexes
    with arange(batch) beside the (batch, 1) IoU argmax, which broadcasts to batch x batch outputs for batch > 1.
    """
    batch, device = pix_feat.shape[0], pix_feat.device
    # No prompt: one padding point labelled -1 per object, as _single_frame_forward pads.
    points = torch.zeros(batch, 1, 1, 2, dtype=pix_feat.dtype, device=device)
    labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=device)
    sparse, dense = model.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None, input_masks=None)
    masks, iou_scores, tokens, score_logits = model.mask_decoder(
        image_embeddings=pix_feat,
        image_positional_embeddings=model.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        high_resolution_features=high_res,
    )  # masks (N, 1, K, S/4, S/4), iou_scores (N, 1, K), tokens (N, 1, K, C); K = 3 multimask, else 1
    appearing = score_logits > 0  # (N, 1, 1)
    best = iou_scores.argmax(-1)[:, 0]  # with K = 1 this is index 0, transformers' single-mask choice
    rows = torch.arange(batch, device=device)
    low_res = torch.where(appearing[:, None], masks[rows, 0, best][:, None], NO_OBJ_SCORE)
    # Picked before upsampling (transformers upsamples all K, then picks): bilinear resizing treats each mask on
    # its own, so the chosen mask comes out the same at a third of the cost.
    size = (model.image_size, model.image_size)
    high_res_masks = F.interpolate(low_res.float(), size=size, mode="bilinear", align_corners=False).to(low_res.dtype)
    pointer = model.object_pointer_proj(tokens[rows, 0, best][:, None])
    present = appearing.to(pointer.dtype)
    pointer = present * pointer + (1 - present) * model.no_object_pointer  # occluded: the learnt no-object pointer
    return {
        "pred_masks": low_res,
        "object_pointer": pointer,
        "high_res_masks": high_res_masks,
        "object_score_logits": score_logits,
    }
