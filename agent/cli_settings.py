"""agent.solve's options applied to a profile: the settings a run starts from (also evals/run_avsbench.py's).

Apart from agent.solve's parser, because this loads the model libraries (torch, transformers) through the profiles:
agent.solve imports it only once the clip is known to be readable.
"""

from __future__ import annotations

import argparse

from agent.profiles import (
    agent_profile,
    base_profile,
    parse_model_arg,
    parse_planner_arg,
    resolve_llm,
    with_compiled_models,
    with_random_weights,
    with_segmentation,
)
from graphs.context import LLMSettings, PipelineSettings
from tools.errors import InputError
from tools.sampling import parse_frame_strategy


def settings_from_args(args: argparse.Namespace) -> PipelineSettings:
    """The profile, refined by every option the user gave."""
    agent = args.graph == "agent"
    settings = agent_profile(args.profile) if agent else base_profile(args.profile)
    updates: dict = {}
    for role in ("captioner", "tagger", "grounder", "segmenter", "critic"):
        value = getattr(args, role)
        if value is not None:
            if role == "critic" and not agent:
                raise InputError("--critic belongs to the agent graph (--graph agent)")
            updates[role] = parse_model_arg(role, value)
    updates.update(_agent_updates(args) if agent else {})
    if args.frames is not None:
        parse_frame_strategy(args.frames)
        updates["frames"] = args.frames
    if args.max_frames is not None:
        if args.max_frames < 1:
            raise InputError("--max-frames must be at least 1")
        updates["max_frames"] = args.max_frames
    for name in ("box_threshold", "text_threshold"):
        value = getattr(args, name)
        if value is not None:
            if not 0.0 <= value <= 1.0:
                raise InputError(f"--{name.replace('_', '-')} must be between 0 and 1, got {value}")
            updates[name] = value
    if args.queries is not None:
        queries = tuple(q.strip() for q in args.queries.split("|") if q.strip())
        if not queries:
            raise InputError("--queries needs at least one query")
        updates["queries"] = queries
    if args.phrases is not None:
        phrases = tuple(p.strip().lower() for p in args.phrases.split(",") if p.strip())
        if not phrases:
            raise InputError("--phrases needs at least one phrase")
        updates["oracle_phrases"] = phrases
    if args.translator is not None:
        updates["translator"] = args.translator
    if args.variant is not None:
        updates["translate_variant"] = args.variant
    updates["device"] = args.device
    updates["write_overlay"] = not args.no_overlay
    settings = settings.model_copy(update=updates)
    settings = with_segmentation(settings, args.segmentation, args.propagator)
    if settings.oracle_phrases is None and settings.captioner is None and settings.tagger is None:
        raise InputError("nothing would listen to the audio: with --captioner none and no tagger, give --phrases")
    if args.seed_frames is not None:
        if args.seed_frames < 0:
            raise InputError(f"--seed-frames must be 0 or more, got {args.seed_frames}")
        settings = settings.model_copy(update={"seed_frames": args.seed_frames})
    if args.weights == "random":
        settings = with_random_weights(settings)
    if args.compile:
        settings = with_compiled_models(settings)
    needs_llm = settings.oracle_phrases is None and settings.translator == "llm"
    remote_planner = getattr(settings, "planner", None) == "llm" and getattr(settings, "planner_model", None) is None
    if needs_llm or remote_planner or args.llm or args.llm_base_url:
        settings = resolve_llm(settings, args.llm, args.llm_base_url)
    return type(settings).model_validate(settings.model_dump())


def _agent_updates(args: argparse.Namespace) -> dict:
    updates: dict = {}
    for name, low in (("max_rounds", 1), ("max_tool_calls", 1), ("deadline", 1)):
        value = getattr(args, name)
        if value is not None:
            if value < low:
                raise InputError(f"--{name.replace('_', '-')} must be at least {low}")
            updates["deadline_s" if name == "deadline" else name] = value
    if args.planner is not None:
        updates.update(parse_planner_arg(args.planner))
    if args.critic_llm is not None:
        updates["critic"] = None
        updates["critic_llm"] = LLMSettings(model=args.critic_llm, base_url=args.llm_base_url)
    return updates
