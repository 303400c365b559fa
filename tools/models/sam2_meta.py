"""SAM 2 video propagation with Meta's reference package (`sam2`, facebookresearch/sam2): the `sam2_meta` propagator.

The contract of sam2_video.Sam2VideoPropagator (boxes on one seed frame -> masks on every frame: the seed, the later
frames in order, then the earlier ones backwards), run by Meta's SAM2VideoPredictor as its own notebooks run it:
add_new_points_or_box for each object on the seed frame, then propagate_in_video forward and in reverse.

Faces: `real` takes a hub id Meta's package knows (facebook/sam2.1-hiera-tiny / -small / -base-plus / -large, and
the sam2 ones) and loads Meta's .pt checkpoint from that hub repository, or a local .pt file named as Meta names
them (sam2.1_hiera_small.pt, ...), built from Meta's config for that name; `tiny` shrinks Meta's sam2.1 Hiera-T
config (128 px input, 64 wide) with seeded random weights; `random` builds the real config of the model id with
random weights (cost measurements).

Frames STREAM. Meta's init_state decodes the whole video into one tensor up front (memory grows with the video);
this adapter hands the predictor the same inference state over a FrameFeed that decodes a frame only when the model
reads it, and after each frame drops the outputs SAM 2 will not read again (sam2_video.release_outputs, the rule the
transformers trackers use). Held at any time: one frame's pixels and features (Meta caches the latest frame's), plus
per object the seed frame's output and the memories / object pointers of the frames within SAM 2's windows.

Two choices differ from Meta's builder defaults: the small-hole filling of masks (fill_hole_area=8) is off, as it
needs a CUDA kernel this project does not build (Meta's INSTALL.md: optional, "doesn't affect the results in most
cases"), so every machine gives the same masks; and frames are resized from the decoded frame (at most max_side)
rather than from the full-size one.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tools.errors import InputError, ModelUnavailableError
from tools.frames import FrameRef, load_frame
from tools.models.base import ModelSpec
from tools.models.precision import scoped_autocast
from tools.models.registry import load_pretrained, torch_dtype
from tools.models.sam2_video import BoxTracker, PropagationStats, release_outputs, tensor_bytes

IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
"""Meta's video predictor normalises frames with ImageNet's mean and std (sam2/utils/misc.py load_video_frames)."""

TINY_IMAGE_SIZE = 128
TINY_WIDTH = 64
"""Tiny face: FPN, prompt, decoder and memory width. Meta's SAM heads split it over 8 attention heads, and memories
are 64-channel in every sam2.1 config, so 64 keeps one object pointer token per frame, as the real models do."""

TINY_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def _tiny_overrides(size: int = TINY_IMAGE_SIZE, width: int = TINY_WIDTH) -> list[str]:
    """Hydra overrides shrinking Meta's sam2.1 Hiera-T to a `size` px input: an 8-channel Hiera of 1-2-2-1 blocks
    (global attention in blocks 2 and 4, none of them a pooling block), one memory-attention layer on its
    size/16 grid, everything `width` wide; 7 memory frames and 16 object pointers stay the real ones."""
    grid = size // 16
    trunk = "++model.image_encoder.trunk"
    layer = "++model.memory_attention.layer"
    return [
        f"++model.image_size={size}",
        f"{trunk}.embed_dim=8",
        f"{trunk}.stages=[1,2,2,1]",
        f"{trunk}.global_att_blocks=[2,4]",
        f"{trunk}.window_spec=[4,4,4,2]",
        f"{trunk}.window_pos_embed_bkg_spatial_size=[4,4]",
        "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
        f"++model.image_encoder.neck.d_model={width}",
        f"++model.image_encoder.neck.position_encoding.num_pos_feats={width}",
        f"++model.memory_attention.d_model={width}",
        "++model.memory_attention.num_layers=1",
        f"{layer}.d_model={width}",
        f"{layer}.dim_feedforward={2 * width}",
        f"{layer}.self_attention.embedding_dim={width}",
        f"{layer}.self_attention.feat_sizes=[{grid},{grid}]",
        f"{layer}.cross_attention.embedding_dim={width}",
        f"{layer}.cross_attention.feat_sizes=[{grid},{grid}]",
        f"++model.memory_encoder.in_dim={width}",
        f"++model.memory_encoder.mask_downsampler.embed_dim={width}",
        f"++model.memory_encoder.fuser.layer.dim={width}",
    ]


def _build_sam():
    """Meta's build module, imported when a sam2_meta model is built (it sets up Hydra's config search path)."""
    try:
        from sam2 import build_sam
    except ImportError as err:
        raise InputError(
            "the sam2_meta propagator needs Meta's sam2 package: `uv sync` installs it with this project's dev "
            "group, `pip install 'openavs-agent[sam2]'` otherwise"
        ) from err
    return build_sam


def _checkpoint_configs() -> dict[str, str]:
    """Meta's checkpoint file name -> its Hydra config (sam2.1_hiera_small.pt -> configs/sam2.1/sam2.1_hiera_s.yaml)."""
    return {checkpoint: config for config, checkpoint in _build_sam().HF_MODEL_ID_TO_FILENAMES.values()}


def hub_weights_file(spec: ModelSpec) -> str | None:
    """The file of `spec`'s hub repository that holds Meta's weights (facebook/sam2.1-hiera-small ->
    sam2.1_hiera_small.pt), what the registry looks for in the hub cache; None when the model id is a local
    checkpoint, whose name is checked here (InputError for a name none of Meta's configs has)."""
    known = _build_sam().HF_MODEL_ID_TO_FILENAMES
    if spec.model_id in known:
        return known[spec.model_id][1]
    _local_checkpoint(spec)
    return None


def _local_checkpoint(spec: ModelSpec) -> tuple[str, Path]:
    """(Meta config name, path) of a local .pt checkpoint named as Meta names them."""
    path = Path(spec.model_id).expanduser()
    configs = _checkpoint_configs()
    if path.suffix != ".pt":
        known = ", ".join(_build_sam().HF_MODEL_ID_TO_FILENAMES)
        raise InputError(
            f"--propagator sam2_meta:{spec.model_id}: expected a hub id Meta's sam2 knows ({known}) "
            "or a local .pt checkpoint"
        )
    if path.name not in configs:
        raise InputError(
            f"--propagator sam2_meta:{spec.model_id}: the checkpoint's name tells its architecture; expected one of "
            f"{', '.join(sorted(configs))}"
        )
    return configs[path.name], path


def _config_and_checkpoint(spec: ModelSpec) -> tuple[str, str | None]:
    """(Meta config name, checkpoint path or None for random weights) for a real or random spec."""
    known = _build_sam().HF_MODEL_ID_TO_FILENAMES
    if spec.model_id in known:
        config, checkpoint_name = known[spec.model_id]
        if spec.face == "random":
            return config, None

        def download(model_id: str, revision: str | None) -> str:
            from huggingface_hub import hf_hub_download

            return hf_hub_download(model_id, checkpoint_name, revision=revision)

        return config, load_pretrained(download, spec)
    config, path = _local_checkpoint(spec)
    if spec.face == "random":
        return config, None
    if not path.is_file():
        raise ModelUnavailableError(f"propagator checkpoint '{spec.model_id}' does not exist")
    return config, str(path)


def build_predictor(spec: ModelSpec, device: str) -> Any:
    """Meta's SAM2VideoPredictor for `spec` on `device` (eval mode, float32 unless spec.dtype says otherwise),
    built by Meta's build_sam2_video_predictor with its post-processing settings, hole filling off."""
    build_sam = _build_sam()
    if spec.face == "tiny":
        config, checkpoint, overrides = TINY_CONFIG, None, _tiny_overrides()
    elif spec.face in ("real", "random"):
        (config, checkpoint), overrides = _config_and_checkpoint(spec), []
    else:
        raise InputError(f"{spec.role} face '{spec.face}' is not one of real, tiny, random")
    _quiet_progress_bars()
    # Built without weights, then loaded here: Meta's loader reports a mismatch as a bare RuntimeError only. Initial
    # weights are drawn after seed 0 (tiny and random faces are the same in every process), on a forked RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        predictor = build_sam.build_sam2_video_predictor(config, None, device=device, hydra_overrides_extra=overrides)
    if checkpoint is not None:
        _load_weights(predictor, checkpoint, Path(config).stem)
    predictor.fill_hole_area = 0
    return predictor.to(dtype=torch_dtype(spec.dtype, device))


def _quiet_progress_bars() -> None:
    """Meta's propagate_in_video draws a tqdm bar on stderr for every pass (two per track, so two per segment round
    of the agent), between the run's own progress lines: its module's tqdm is made a disabled one. Only Meta's video
    predictor module is touched; every other tqdm (downloads, ...) keeps its bars."""
    from sam2 import sam2_video_predictor

    sam2_video_predictor.tqdm = functools.partial(tqdm, disable=True)


def _load_weights(predictor: Any, checkpoint: str, architecture: str) -> None:
    """Meta's checkpoint ({"model": state_dict}) into `predictor`, every weight present and of its shape."""
    try:
        weights = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    except Exception as err:
        raise ModelUnavailableError(f"propagator checkpoint '{checkpoint}' is not a sam2 checkpoint: {err}") from err
    try:
        predictor.load_state_dict(weights)
    except RuntimeError as err:
        raise ModelUnavailableError(
            f"propagator checkpoint '{checkpoint}' does not match Meta's {architecture} architecture"
        ) from err


class FrameFeed(Sequence[torch.Tensor]):
    """A clip's frames as Meta's predictor reads inference_state["images"]: feed[k] is frame k decoded (longer side
    at most max_side), resized to S x S and normalised exactly as Meta's load_video_frames does, float32
    (3, S, S). Decoded on every access and never kept: the predictor keeps the one it is tracking."""

    def __init__(self, refs: Sequence[FrameRef], image_size: int, max_side: int | None) -> None:
        self.refs = refs
        self.image_size = image_size
        self.max_side = max_side
        self._mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(IMAGE_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, pos: int) -> torch.Tensor:  # type: ignore[override]
        image, _ = load_frame(self.refs[pos], self.max_side)
        resized = np.array(image.resize((self.image_size, self.image_size))) / 255.0
        pixels = torch.from_numpy(resized).permute(2, 0, 1).float()
        return (pixels - self._mean) / self._std


def stream_state(predictor: Any, feed: FrameFeed, height: int, width: int) -> dict[str, Any]:
    """The inference state SAM2VideoPredictor.init_state (sam2 1.1.0) builds for a video of height x width px,
    over `feed` instead of a decoded video, and without its warm-up forward on frame 0 (which only fills the
    one-frame feature cache). Everything stays on the model's device, as init_state's defaults keep it."""
    device = predictor.device
    return {
        "images": feed,
        "num_frames": len(feed),
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


class MetaSam2VideoPropagator(BoxTracker):
    """A Propagator (tools/propagation.py) running Meta's SAM2VideoPredictor over streamed frames; propagate() as
    sam2_video.Sam2VideoPropagator's (BoxTracker).

    stats and prune mean what they mean on sam2_video.StreamingVideoAdapter: peak_session_bytes counts the tensors
    of the inference state, peak_session_frames the frames whose pixels it holds.
    """

    def __init__(self, spec: ModelSpec, predictor: Any, device: str) -> None:
        self.spec = spec
        self.predictor = predictor.eval()
        self.device = device
        self.stats = PropagationStats()
        self.prune = True
        """False keeps every frame's outputs, as Meta's predictor does: for checking that pruning is exact."""

    def _track(
        self, refs: list[FrameRef], seed_pos: int, boxes: np.ndarray, ids: list[int], max_side: int | None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        seed = refs[seed_pos]
        predictor = self.predictor
        # Boxes are in the seed frame's ORIGINAL pixels and the state's video size is the original size: Meta
        # normalises prompts by it and upsamples masks to it, whatever size the frames were decoded at.
        state = stream_state(predictor, FrameFeed(refs, predictor.image_size, max_side), seed.height, seed.width)
        start = time.perf_counter()
        with torch.inference_mode(), scoped_autocast(self.device):
            for obj_id, box in zip(ids, boxes, strict=True):
                predictor.add_new_points_or_box(state, frame_idx=seed_pos, obj_id=obj_id, box=box)
        self.stats.seconds += time.perf_counter() - start
        for reverse in (False, True):
            passes = predictor.propagate_in_video(state, start_frame_idx=seed_pos, reverse=reverse)
            while True:
                start = time.perf_counter()
                with scoped_autocast(self.device):  # propagate_in_video runs each frame under inference_mode
                    step = next(passes, None)
                if step is None:
                    break
                pos, _, logits = step
                if reverse and pos == seed_pos:  # the reverse pass starts by handing back the seed frame again
                    continue
                masks = (logits[:, 0] > 0).cpu().numpy()
                scores = self._scores(state, pos)
                self.stats.frames += 1
                self.stats.seconds += time.perf_counter() - start
                self.stats.peak_session_bytes = max(self.stats.peak_session_bytes, tensor_bytes(state))
                self.stats.peak_session_frames = max(self.stats.peak_session_frames, len(state["cached_features"]))
                if self.prune:
                    release_outputs(
                        state["output_dict_per_obj"],
                        state["frames_tracked_per_obj"],
                        pos,
                        seed_pos,
                        predictor.num_maskmem,
                        predictor.max_obj_ptrs_in_encoder,
                    )
                yield refs[pos].index, masks, scores

    @staticmethod
    def _scores(state: dict[str, Any], pos: int) -> np.ndarray:
        """float32 (N,) sigmoid of each object's score logit on frame `pos`, in the order objects were added."""
        logits = []
        for outputs in state["output_dict_per_obj"].values():
            entry = outputs["cond_frame_outputs"].get(pos) or outputs["non_cond_frame_outputs"][pos]
            logits.append(entry["object_score_logits"].float().reshape(-1))
        return torch.sigmoid(torch.cat(logits)).cpu().numpy().astype(np.float32)


def load_sam2_meta_video(spec: ModelSpec, device: str) -> MetaSam2VideoPropagator:
    """Meta's SAM 2 video predictor as a propagator for `spec` on `device`; on CUDA each frame runs under bfloat16
    autocast, as Meta's notebooks run it."""
    return MetaSam2VideoPropagator(spec, build_predictor(spec, device), device)
