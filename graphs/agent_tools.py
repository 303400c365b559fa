"""The agent's tools: a fixed allowlist of LangChain tools over the shared stages.

Each tool reads the graph state and the run context through LangGraph's injected ToolRuntime, does one stage,
records one `tool_call` trace record, and returns a Command that updates state and answers the call with a
ToolMessage whose content frames every model-produced string as data (prompts/planner.py). Tools raise
ToolInputError for calls the planner can fix; the ToolNode turns it into an error message for the planner.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolRuntime
from langgraph.types import Command

from graphs.context import RunContext, run_context
from graphs.pipeline import Stage, traced_stage
from graphs.stages import (
    caption_audio,
    ground_phrases,
    load_clip,
    overlay_paths,
    read_masks,
    render_round_overlays,
    sampled_times,
    segment_detections,
    tag_frames,
    translate_captions,
)
from prompts.planner import render_tool_result
from tools.datamodel import frame_number
from tools.errors import OpenAVSError
from tools.sampling import parse_frame_strategy

MAX_PHRASES_PER_FRAME = 5


class ToolInputError(ValueError):
    """A tool call the planner can correct (bad arguments, a step called out of order)."""


def _reply(
    runtime: ToolRuntime[Any, Any],
    result: dict[str, Any],
    stage: Stage,
    usage: tuple[str, dict[str, int]] | None = None,
    **update: Any,
) -> Command:
    """Answer the call with the result as data, update state, and add the call's seconds (and a model's tokens)
    to the run's per-stage totals, which accumulate over refinement rounds."""
    message = ToolMessage(render_tool_result(result), tool_call_id=runtime.tool_call_id, artifact=result)
    state = runtime.state
    seconds = state.get("timings_s", {}).get(stage.name, 0.0) + stage.seconds
    update["timings_s"] = {stage.name: round(seconds, 3)}
    if usage is not None:
        role, counts = usage
        before = state.get("usage", {}).get(role, {})
        update["usage"] = {role: {k: before.get(k, 0) + v for k, v in counts.items()}}
    return Command(update={**update, "messages": [message]})


def _ctx(runtime: ToolRuntime[Any, Any]) -> RunContext:
    return run_context(runtime.context)


def _round(runtime: ToolRuntime[Any, Any]) -> int:
    return runtime.state.get("round", 0)


def _clean_phrases(phrases: list[str]) -> list[str]:
    cleaned = list(dict.fromkeys(p.strip().lower() for p in phrases if p and p.strip()))
    if len(cleaned) > MAX_PHRASES_PER_FRAME:
        raise ToolInputError(f"at most {MAX_PHRASES_PER_FRAME} phrases per frame, got {len(cleaned)}")
    return cleaned


@tool
def describe_audio(runtime: ToolRuntime[Any, Any], queries: list[str] | None = None) -> Command:
    """Caption each frame's audio window with the audio-language model. `queries` replaces the configured
    questions asked about the audio (e.g. ["what is making the sound?"]); omit it to use the configured ones."""
    ctx, state = _ctx(runtime), runtime.state
    queries_used = tuple(q for q in (queries or []) if q.strip()) or None
    with traced_stage(ctx, "tool_call", "describe_audio", round=_round(runtime), arguments={"queries": queries}) as st:
        captions, usage = caption_audio(ctx, sampled_times(state), state["audio"], queries_used)
        result = {
            "audible": state["audio"]["audible"],
            "frames": [{"frame": frame_number(k), "captions": c} for k, c in enumerate(captions)],
        }
        st.summary.update(result=result)
    return _reply(runtime, result, st, ("captioner", usage), captions=captions)


@tool
def tag_audio(runtime: ToolRuntime[Any, Any]) -> Command:
    """Score sound labels for each frame's audio window with the audio tagger (best first)."""
    ctx, state = _ctx(runtime), runtime.state
    with traced_stage(ctx, "tool_call", "tag_audio", round=_round(runtime), arguments={}) as st:
        tags = tag_frames(ctx, sampled_times(state), state["audio"])
        result = {
            "frames": [
                {"frame": frame_number(k), "tags": [[label, score] for label, score in t]} for k, t in enumerate(tags)
            ]
        }
        st.summary.update(result=result)
    return _reply(runtime, result, st, tags=tags)


@tool
def translate(runtime: ToolRuntime[Any, Any]) -> Command:
    """Turn the captions and tags into short groundable nouns of the sounding objects per frame, with the
    configured translator (the paper's LLM prompt, or the built-in lexicon)."""
    ctx, state = _ctx(runtime), runtime.state
    if not state.get("captions") and not state.get("tags"):
        raise ToolInputError("nothing to translate yet: call describe_audio (and tag_audio) first")
    with traced_stage(ctx, "tool_call", "translate", round=_round(runtime), arguments={}) as st:
        translation, usage = translate_captions(ctx, state.get("captions") or [], state.get("tags") or None)
        result = {"frames": [{"frame": frame_number(k), "phrases": p} for k, p in enumerate(translation.phrases)]}
        st.summary.update(result=result, translator=translation.translator)
    return _reply(
        runtime,
        result,
        st,
        ("translator", usage),
        phrases=translation.phrases,
        translator={"name": translation.translator, "model": translation.model_id, "variant": translation.variant},
        warnings=translation.warnings,
    )


@tool
def sample_frames(runtime: ToolRuntime[Any, Any], strategy: str) -> Command:
    """Pick other frames of the clip: "avsbench" (one per second, near its end), "uniform:N" or "fps:F". Captions,
    tags, phrases and detections of the old frames are dropped."""
    ctx, state = _ctx(runtime), runtime.state
    if state["source"]["kind"] != "video":
        raise ToolInputError(
            "this clip's frames are fixed (an extracted frame folder); sample_frames cannot change them"
        )
    try:
        parse_frame_strategy(strategy)
    except OpenAVSError as err:
        raise ToolInputError(str(err)) from err
    with traced_stage(ctx, "tool_call", "sample_frames", round=_round(runtime), arguments={"strategy": strategy}) as st:
        loaded = load_clip(ctx, state["source"], strategy)
        result = {
            "frames": [
                {"frame": frame_number(f["index"]), "time_s": round(f["timestamp_s"], 3)} for f in loaded["frames"]
            ]
        }
        st.summary.update(result=result)
    loaded.pop("warnings")
    return _reply(
        runtime, result, st, **loaded, captions=[], tags=[], phrases=[], detections=[], masks_file="", critiqued=False
    )


def _resolve_phrases(
    state: dict[str, Any], phrases: list[list[str]] | None, all_frames: list[str] | None
) -> list[list[str]]:
    n = len(state["frames"])
    if phrases is not None and all_frames is not None:
        raise ToolInputError("give either phrases (one list per frame) or all_frames, not both")
    if phrases is not None:
        if len(phrases) != n:
            raise ToolInputError(f"phrases must have one list per frame: {n} lists, got {len(phrases)}")
        return [_clean_phrases(p) for p in phrases]
    if all_frames is not None:
        return [_clean_phrases(all_frames)] * n
    if not state.get("phrases"):
        raise ToolInputError("no phrases yet: call translate, or pass phrases or all_frames")
    return state["phrases"]


@tool
def ground(
    runtime: ToolRuntime[Any, Any],
    phrases: list[list[str]] | None = None,
    all_frames: list[str] | None = None,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    one_at_a_time: bool = False,
) -> Command:
    """Find boxes of the named objects in each frame with GroundingDINO. `phrases`: one list of nouns per frame;
    or `all_frames`: the same nouns for every frame; or neither: the current phrases. Thresholds in [0, 1]
    (defaults: the run's; the paper uses box 0.25). `one_at_a_time` grounds each phrase on its own, which helps
    when one phrase crowds out another."""
    ctx, state = _ctx(runtime), runtime.state
    settings = ctx.settings
    proposal = _resolve_phrases(state, phrases, all_frames)
    box = settings.box_threshold if box_threshold is None else box_threshold
    text = settings.text_threshold if text_threshold is None else text_threshold
    if not (0.0 <= box <= 1.0 and 0.0 <= text <= 1.0):
        raise ToolInputError(f"thresholds must be within [0, 1], got box {box} and text {text}")
    arguments = {"phrases": proposal, "box_threshold": box, "text_threshold": text, "one_at_a_time": one_at_a_time}
    with traced_stage(ctx, "tool_call", "ground", round=_round(runtime), arguments=arguments) as st:
        if one_at_a_time:
            per_phrase = [
                ground_phrases(ctx, state["frames"], [[p] if p in frame else [] for frame in proposal], box, text)
                for p in dict.fromkeys(p for frame in proposal for p in frame)
            ]
            detections = [_concat_detections(k, [d[k] for d in per_phrase]) for k in range(len(proposal))]
        else:
            detections = ground_phrases(ctx, state["frames"], proposal, box, text)
        mode = settings.segmentation
        result = {"frames": [_grounding_summary(d, proposal[d["frame_index"]], mode) for d in detections]}
        st.summary.update(result=result)
    return _reply(
        runtime,
        result,
        st,
        phrases=proposal,
        detections=detections,
        grounding={"box_threshold": box, "text_threshold": text, "one_at_a_time": one_at_a_time},
        masks_file="",
        critiqued=False,
    )


DEFERRED_BECAUSE = {
    "propagate": "propagate mode: grounded only if tracking drifts",
    "video": "video mode: SAM 3's video model finds the phrases while it segments",
}


def _grounding_summary(detections: dict[str, Any], asked: list[str], mode: str) -> dict[str, Any]:
    """What the planner reads of one frame's grounding: boxes found, phrases not found, or deferred (and why, by
    segmentation mode)."""
    if detections.get("deferred"):
        return {"frame": frame_number(detections["frame_index"]), "deferred": DEFERRED_BECAUSE[mode]}
    found = zip(detections["phrases"], detections["scores"], detections["boxes"], strict=True)
    return {
        "frame": frame_number(detections["frame_index"]),
        "found": [{"phrase": p, "score": s, "box": b} for p, s, b in found],
        "not_found": [p for p in asked if p not in detections["phrases"]],
    }


def _concat_detections(frame_index: int, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One frame's detections from phrase-by-phrase grounding; deferred (with all their phrases) when deferred."""
    deferred = [d["deferred"] for d in parts if d.get("deferred")]
    merged = {
        "frame_index": frame_index,
        "boxes": [b for d in parts for b in d["boxes"]],
        "scores": [s for d in parts for s in d["scores"]],
        "phrases": [p for d in parts for p in d["phrases"]],
    }
    if deferred:
        merged["deferred"] = {**deferred[0], "phrases": [p for d in deferred for p in d["phrases"]]}
    return merged


@tool
def segment(runtime: ToolRuntime[Any, Any]) -> Command:
    """Turn the latest boxes into masks with SAM2 (each frame on its own, or tracked from the best-grounded frame in
    propagate mode) and render overlays for critique."""
    ctx, state = _ctx(runtime), runtime.state
    if not state.get("detections"):
        raise ToolInputError("no boxes yet: call ground first")
    round_index = _round(runtime)
    with traced_stage(ctx, "tool_call", "segment", round=round_index, arguments={}) as st:
        masks_file = ctx.run_dir / "work" / f"masks_round{round_index}.json"
        segment_detections(ctx, state["frames"], state["detections"], masks_file)
        masks = read_masks(masks_file)
        paths = render_round_overlays(ctx, state["frames"], masks, round_index)
        area = [m.height * m.width for m in masks]
        result = {
            "frames": [
                {
                    "frame": frame_number(m.frame_index),
                    "mask_fraction": round(float(m.union().sum()) / a, 4),
                    "objects": [{"phrase": o.phrase, "fraction": round(float(o.area) / a, 4)} for o in m.objects],
                }
                for m, a in zip(masks, area, strict=True)
            ]
        }
        st.summary.update(result=result, images=[str(p.relative_to(ctx.run_dir)) for p in paths])
    return _reply(runtime, result, st, masks_file=str(masks_file), critiqued=False)


@tool
def critique(runtime: ToolRuntime[Any, Any]) -> Command:
    """Check the latest masks: deterministic checks (empty, full-frame, tiny, jumping areas, low scores, phrases
    the audio does not support), then a vision-language model's verdict when one is configured. Ends a round."""
    ctx, state = _ctx(runtime), runtime.state
    if not state.get("masks_file"):
        raise ToolInputError("no masks for the latest boxes: call segment first")
    round_index = _round(runtime)
    with traced_stage(ctx, "tool_call", "critique", round=round_index, arguments={}) as st:
        masks = read_masks(state["masks_file"])
        outcome = ctx.critic.critique(
            frames=[f["path"] for f in state["frames"]],
            overlays=[str(p) for p in overlay_paths(ctx.run_dir, round_index, len(masks))],
            masks=masks,
            phrases=state["phrases"],
            captions=state.get("captions") or [[] for _ in masks],
            tags=state.get("tags") or [[] for _ in masks],
        )
        verdict = outcome.verdict.model_dump(mode="json")
        findings = [f.model_dump(mode="json") for f in outcome.findings]
        images = [str(p.relative_to(ctx.run_dir)) for p in overlay_paths(ctx.run_dir, round_index, len(masks))]
        ctx.tracer.emit("critique", "critic", round=round_index, verdict=verdict, findings=findings, images=images)
        numbered = {**verdict, "frames": [frame_number(k) for k in verdict["frames"]]}
        result = {"verdict": numbered, "findings": [f["detail"] for f in findings]}
        st.summary.update(result=result)
    attempt = {
        "round": round_index,
        "phrases": state["phrases"],
        "grounding": state.get("grounding", {}),
        "masks_file": state["masks_file"],
        "detections": state["detections"],
        "verdict": verdict,
        "findings": findings,
    }
    return _reply(runtime, result, st, attempts=[attempt], round=round_index + 1, critiqued=True)


@tool
def finalize(reason: str) -> str:
    """End the run: the best critiqued masks of all rounds become the answer. `reason`: why you stop now."""
    return reason  # never executed: the graph routes a finalize call to its finalize node


AGENT_TOOLS: list[BaseTool] = [
    describe_audio,
    tag_audio,
    translate,
    sample_frames,
    ground,
    segment,
    critique,
    finalize,
]
TOOL_NAMES = tuple(t.name for t in AGENT_TOOLS)
