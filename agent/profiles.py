"""Named profiles (paper, default, tiny) and the command-line model overrides that refine them.

Every model role is a ModelSpec; a profile fills all of them. `--weights random` swaps every real model for its
real-size architecture with random weights, to measure cost without downloads.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agent.cli_names import PROFILE_NAMES, SEGMENTATION_MODES
from graphs.context import PAPER_QUERIES, AgentSettings, LLMSettings, PipelineSettings
from tools.errors import InputError
from tools.models.base import ModelSpec, Role
from tools.models.registry import LOADERS

DEFAULT_QUERY = "Describe the sounds in this audio and name what is making each of them, in one sentence."
"""The default profile's single query: instruction-tuned ALMs answer a plain request better than Pengi's task tags."""

KNOWN_MODELS: dict[str, tuple[Role, str]] = {
    "Qwen/Qwen2-Audio-7B-Instruct": ("captioner", "qwen2_audio"),
    "nvidia/audio-flamingo-3-hf": ("captioner", "audio_flamingo3"),
    "Qwen/Qwen2.5-Omni-7B": ("captioner", "qwen2_5_omni"),
    "Qwen/Qwen2.5-Omni-3B": ("captioner", "qwen2_5_omni"),
    "laion/clap-htsat-unfused": ("tagger", "clap"),
    "laion/larger_clap_general": ("tagger", "clap"),
    "MIT/ast-finetuned-audioset-10-10-0.4593": ("tagger", "ast"),
    "IDEA-Research/grounding-dino-tiny": ("grounder", "grounding_dino"),
    "IDEA-Research/grounding-dino-base": ("grounder", "grounding_dino"),
    "facebook/sam2.1-hiera-tiny": ("segmenter", "sam2"),
    "facebook/sam2.1-hiera-small": ("segmenter", "sam2"),
    "facebook/sam2.1-hiera-base-plus": ("segmenter", "sam2"),
    "facebook/sam2.1-hiera-large": ("segmenter", "sam2"),
    "Qwen/Qwen2.5-VL-3B-Instruct": ("critic", "qwen2_5_vl"),
    "Qwen/Qwen2.5-VL-7B-Instruct": ("critic", "qwen2_5_vl"),
}

# config.json model_type -> adapter family, for models given as local folders.
MODEL_TYPE_FAMILY = {
    "qwen2_audio": "qwen2_audio",
    "audioflamingo3": "audio_flamingo3",
    "qwen2_5_omni": "qwen2_5_omni",
    "qwen2_5_omni_thinker": "qwen2_5_omni",
    "clap": "clap",
    "audio-spectrogram-transformer": "ast",
    "grounding-dino": "grounding_dino",
    "sam2": "sam2",
    "qwen2_5_vl": "qwen2_5_vl",
}

SAM3_ID = "facebook/sam3"
SAM3_DETECTION_THRESHOLD = 0.5
"""SAM 3's own default detection threshold; its scores are not GroundingDINO's, so the paper's 0.25 does not carry."""

LOCAL_PLANNER_FAMILY = "qwen2_chat"  # tools.models.chat_llm: any chat template that takes tools= and writes <tool_call>


def _real(role: Role, model_id: str) -> ModelSpec:
    return ModelSpec(role=role, family=KNOWN_MODELS[model_id][1], model_id=model_id)


def _tiny(role: Role, family: str) -> ModelSpec:
    return ModelSpec(role=role, family=family, model_id=f"tiny-{family}", face="tiny")


def llm_configured() -> bool:
    """Whether an OpenAI-compatible LLM is configured in the environment."""
    return bool(os.environ.get("OPENAI_API_KEY"))


def base_profile(name: str) -> PipelineSettings:
    """The settings a profile names, before command-line overrides."""
    if name == "paper":
        return PipelineSettings(
            profile=name,
            captioner=_real("captioner", "Qwen/Qwen2-Audio-7B-Instruct"),
            queries=PAPER_QUERIES,
            tagger=None,
            translator="llm",
            llm=LLMSettings(model="gpt-4o"),
            translate_variant="both",
            grounder=_real("grounder", "IDEA-Research/grounding-dino-base"),
            segmenter=_real("segmenter", "facebook/sam2.1-hiera-large"),
        )
    if name == "default":
        return PipelineSettings(
            profile=name,
            captioner=_real("captioner", "Qwen/Qwen2-Audio-7B-Instruct"),
            queries=(DEFAULT_QUERY,),
            tagger=_real("tagger", "laion/clap-htsat-unfused"),
            translator="llm" if llm_configured() else "lexicon",
            llm=LLMSettings(model="gpt-4o-mini") if llm_configured() else None,
            translate_variant="both",
            grounder=_real("grounder", "IDEA-Research/grounding-dino-tiny"),
            segmenter=_real("segmenter", "facebook/sam2.1-hiera-small"),
        )
    if name == "sam3":
        # SAM 3 takes the phrases as text prompts and returns instance masks: it fills both vision roles.
        sam3 = ModelSpec(role="grounder", family="sam3", model_id=SAM3_ID)
        return base_profile("default").model_copy(
            update={
                "profile": name,
                "grounder": sam3,
                "segmenter": sam3.model_copy(update={"role": "segmenter"}),
                "box_threshold": SAM3_DETECTION_THRESHOLD,
            }
        )
    if name == "tiny":
        # Random weights give near-uniform tag scores; a zero tag threshold lets every stage run on something.
        return PipelineSettings(
            profile=name,
            captioner=_tiny("captioner", "qwen2_audio"),
            queries=(DEFAULT_QUERY,),
            tagger=_tiny("tagger", "clap"),
            translator="lexicon",
            lexicon_min_tag_score=0.0,
            grounder=_tiny("grounder", "grounding_dino"),
            segmenter=_tiny("segmenter", "sam2"),
        )
    raise InputError(f"unknown profile '{name}'; choose one of: {', '.join(PROFILE_NAMES)}")


def agent_profile(name: str) -> AgentSettings:
    """A profile's settings for the agent graph: the pipeline's models plus a planner and a critic.

    The critic is a VLM where the profile can afford one (default: Qwen2.5-VL-3B; tiny: its tiny face); the paper
    profile keeps the deterministic checks only, so it stays the paper's models. The planner is the LLM when
    one is configured, else the built-in policy.
    """
    base = base_profile(name)
    critic = {
        "paper": None,
        "default": _real("critic", "Qwen/Qwen2.5-VL-3B-Instruct"),
        "sam3": _real("critic", "Qwen/Qwen2.5-VL-3B-Instruct"),
        "tiny": _tiny("critic", "qwen2_5_vl"),
    }[name]
    planner = "llm" if base.llm is not None else "builtin"
    return AgentSettings(**base.model_dump(), critic=critic, planner=planner)


def parse_model_arg(role: Role, value: str, face: str = "real") -> ModelSpec | None:
    """A model given on the command line: `none`, a known hub id, `FAMILY:ID_OR_PATH`, or a local folder whose
    config.json names its architecture. `face` is `tiny` when the id is `tiny`."""
    if value.lower() == "none":
        if role in {"captioner", "tagger", "critic"}:
            return None
        raise InputError(f"--{role} cannot be none: the pipeline needs a {role}")
    families = sorted(f for r, f in LOADERS if r == role)
    family, _, model_id = value.partition(":") if value.split(":")[0] in families else ("", "", value)
    if not family:
        if value in KNOWN_MODELS:
            known_role, family = KNOWN_MODELS[value]
            if known_role != role:
                raise InputError(f"--{role} {value}: that model is a {known_role}, not a {role}")
        elif Path(value).is_dir():
            family = _family_from_folder(role, Path(value))
        else:
            raise InputError(
                f"--{role} {value}: not a known model id, an existing folder, or FAMILY:ID "
                f"(families: {', '.join(families)})"
            )
    if model_id == "tiny":
        return _tiny(role, family)
    return ModelSpec(role=role, family=family, model_id=model_id, face=face)


def parse_planner_arg(value: str) -> dict[str, Any]:
    """`--planner builtin | llm | local:MODEL` as settings updates. `llm` is the OpenAI-compatible model (--llm);
    `local:MODEL` is a transformers chat model with tool calling run in-process (a hub id such as
    Qwen/Qwen2.5-7B-Instruct, a local folder, or `tiny`), which plans as the LLM planner does."""
    if value in ("builtin", "llm"):
        return {"planner": value, "planner_model": None}
    kind, _, model = value.partition(":")
    if kind != "local" or not model.strip():
        raise InputError(f"--planner {value}: expected builtin, llm or local:MODEL (a hub id, a folder or tiny)")
    return {"planner": "llm", "planner_model": parse_model_arg("planner", f"{LOCAL_PLANNER_FAMILY}:{model.strip()}")}


def _family_from_folder(role: Role, folder: Path) -> str:
    config = folder / "config.json"
    if not config.is_file():
        raise InputError(f"--{role} {folder}: no config.json in that folder")
    model_type = json.loads(config.read_text()).get("model_type", "")
    family = MODEL_TYPE_FAMILY.get(model_type)
    if family is None or (role, family) not in LOADERS:
        raise InputError(f"--{role} {folder}: model_type '{model_type}' is not a supported {role}")
    return family


TRACKERS = {"sam2": ("sam2_video", "sam2_meta"), "sam3": ("sam3_tracker_video",)}
"""Segmenter family -> the video trackers that run its checkpoint, the default first: SAM2's video model
(transformers) or Meta's sam2 video predictor; SAM 3's tracker (seeded with the boxes SAM 3's own text grounding
found)."""


def _from_segmenter_checkpoint(
    settings: PipelineSettings, role: Role, families: dict[str, str], needs: str
) -> ModelSpec:
    """`role`'s model from the run's segmenter checkpoint (id, revision), face and dtype, its family looked up by the
    segmenter's in `families`; `needs` (what the mode needs) opens the error when the segmenter has none. Same
    checkpoint, revision and dtype: SAM 3's models then share one ViT (tools/models/sam3_vision.py)."""
    segmenter = settings.segmenter
    family = families.get(segmenter.family)
    if family is None:
        raise InputError(f"{needs}, not '{segmenter.family}'")
    return segmenter.model_copy(update={"role": role, "family": family})


def propagator_for(settings: PipelineSettings, choice: str | None = None) -> ModelSpec:
    """The video tracker of propagate mode. By default the segmenter's own (same checkpoint and face, TRACKERS'
    first): SAM2 video for a SAM2 segmenter, SAM 3's tracker for SAM 3. `choice` (--propagator) is a tracker
    family run on the segmenter's checkpoint (`sam2_meta`: Meta's sam2 predictor), or FAMILY:ID for another one."""
    if choice is not None and choice not in TRACKERS.get(settings.segmenter.family, ()):
        if choice in {family for role, family in LOADERS if role == "propagator"}:
            raise InputError(
                f"--propagator {choice} cannot run the segmenter's {settings.segmenter.family} checkpoint: give "
                f"{choice}:MODEL"
            )
        return parse_model_arg("propagator", choice)
    needs = "--segmentation propagate tracks with SAM2 or SAM 3: it needs one of them as the segmenter"
    default = {segmenter: trackers[0] for segmenter, trackers in TRACKERS.items()}
    spec = _from_segmenter_checkpoint(settings, "propagator", default, needs)
    return spec if choice is None else spec.model_copy(update={"family": choice})


VIDEO_SEGMENTER_FAMILY = {"sam3": "sam3_video"}
"""Segmenter family -> the text-prompted video model of the same checkpoint (SAM 3's detector + tracker)."""


def with_segmentation(settings: PipelineSettings, mode: str, propagator: str | None = None) -> PipelineSettings:
    """The settings in segmentation `mode` (image, propagate or video), with the video model that mode needs: the
    tracker for propagate (propagator_for, `propagator` choosing it), SAM 3's video model for video."""
    if propagator is not None and mode != "propagate":
        raise InputError("--propagator chooses the tracker of --segmentation propagate")
    if mode == "image":
        return settings.model_copy(update={"segmentation": "image"})
    if mode == "propagate":
        spec = propagator_for(settings, propagator)
        return settings.model_copy(update={"segmentation": "propagate", "propagator": spec})
    if mode != "video":
        raise InputError(f"segmentation '{mode}' is not one of {', '.join(SEGMENTATION_MODES)}")
    needs = "--segmentation video runs SAM 3's video model: it needs SAM 3 as the segmenter (--profile sam3)"
    spec = _from_segmenter_checkpoint(settings, "video_segmenter", VIDEO_SEGMENTER_FAMILY, needs)
    return settings.model_copy(update={"segmentation": "video", "video_segmenter": spec})


def with_random_weights(settings: PipelineSettings) -> PipelineSettings:
    """Every real model replaced by its real-size architecture with random weights (cost measurements)."""
    updates: dict[str, Any] = {}
    for role in ("captioner", "tagger", "grounder", "segmenter", "propagator", "video_segmenter", "critic"):
        if not hasattr(settings, role):
            continue
        spec: ModelSpec | None = getattr(settings, role)
        if spec is not None and spec.face == "real":
            updates[role] = spec.model_copy(update={"face": "random"})
    return settings.model_copy(update=updates)


def with_compiled_models(settings: PipelineSettings) -> PipelineSettings:
    """The captioner set to run its decoding compiled (ModelSpec.compile); other roles have no compiled path."""
    if settings.captioner is None:
        return settings
    return settings.model_copy(update={"captioner": settings.captioner.model_copy(update={"compile": True})})


def resolve_llm(settings: PipelineSettings, model: str | None, base_url: str | None) -> PipelineSettings:
    """Apply `--llm` / `--llm-base-url`; an explicit model switches translation to the LLM."""
    needs_llm = settings.translator == "llm" or getattr(settings, "planner", "builtin") == "llm"
    if model is None and base_url is None:
        if needs_llm and not (llm_configured() or (settings.llm and settings.llm.base_url)):
            raise InputError(
                f"profile '{settings.profile}' translates with an LLM: set OPENAI_API_KEY, or give --llm MODEL "
                "with --llm-base-url URL for an OpenAI-compatible server, or use --translator lexicon"
            )
        return settings
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"--llm-base-url {base_url!r}: give an http(s) URL, e.g. http://127.0.0.1:8000/v1")
    current = settings.llm or LLMSettings(model=model or "gpt-4o-mini")
    llm = current.model_copy(update={k: v for k, v in {"model": model, "base_url": base_url}.items() if v})
    updates: dict[str, Any] = {"translator": "llm", "llm": llm}
    if isinstance(settings, AgentSettings):
        updates["planner"] = "llm"
    return settings.model_copy(update=updates)
