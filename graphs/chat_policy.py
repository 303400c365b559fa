"""The built-in chat handler: answers the documented requests (graphs/chat_intents.py) with no LLM.

It is a planner like graphs/planners.BuiltinPlanner: each call looks at the user's line and at the state, and
returns ONE tool call or, when the request is done, the answer as text. It is deterministic and stateless: what
was already done this turn is read from the turn's tool results. Only the user's line is parsed; captions, tags
and every other model output are data it reports, never instructions it follows.

Per request:
- what: describe_audio -> tag_audio -> translate (each once per clip) -> ground (when nothing was grounded yet)
  -> answer from captions, tags, phrases and boxes.
- segment: the audio's phrases -> ground -> segment -> critique -> refine as the agent does (graphs/planners.refine)
  within the turn's rounds -> save the best round -> answer.
- include / exclude / only: ground the edited phrases with the current thresholds (once more, lower and one
  phrase at a time, when a named object is found in no frame) -> segment -> critique -> save -> answer.
- explain: explain (the trace) -> answer. save: save -> answer. help, unknown: answer.
A tool that fails ends the turn with its error as the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, ToolMessage

from graphs import chat_answers as answers
from graphs.chat_intents import HELP_TEXT, Request, mentioned, parse_request
from graphs.chat_state import heard_phrases, known_phrases, last_user_text, turn_results
from graphs.context import AgentSettings
from graphs.planners import MIN_BOX_THRESHOLD, THRESHOLD_STEP, PlannerTurn, _call, refine


@dataclass(frozen=True)
class Step:
    """The handler's next move: a tool call with its reason, or (call None) the answer."""

    text: str
    call: dict[str, Any] | None = None


Handler = Callable[[Request, dict[str, Any], AgentSettings, int], Step]


class BuiltinChatHandler:
    """The chat's planner when no LLM is configured; see the module docstring."""

    name = "builtin"

    def next_turn(
        self, state: dict[str, Any], settings: AgentSettings, rounds_left: int, calls_left: int
    ) -> PlannerTurn:
        request = parse_request(last_user_text(state["messages"]))
        last = state["messages"][-1]
        if isinstance(last, ToolMessage) and last.status == "error":
            step = Step(answers.failed(str(last.content)))
        else:
            step = HANDLERS[request.kind](request, state, settings, rounds_left)
        message = AIMessage(content=step.text, tool_calls=[step.call] if step.call else [])
        rendered = [{"role": "policy", "content": f"{request.kind}: {step.text}"}]
        return PlannerTurn(message=message, rendered=rendered, model="builtin", extra={"request": request.kind})


def _heard(state: dict[str, Any], settings: AgentSettings) -> list[list[str]] | None:
    if settings.oracle_phrases is not None:
        return [list(settings.oracle_phrases) for _ in state["frames"]]
    return heard_phrases(state["messages"])


def _listen(state: dict[str, Any], settings: AgentSettings) -> Step | None:
    """The next audio step before the sounding objects are named, or None when they are."""
    if settings.oracle_phrases is not None:
        return None
    if settings.captioner and not state.get("captions"):
        return Step("First, what does each frame's audio sound like?", _call("describe_audio"))
    if settings.tagger and not state.get("tags"):
        return Step("A second opinion: scored sound labels.", _call("tag_audio"))
    if heard_phrases(state["messages"]) is None:
        return Step("Name the sounding objects from the captions and tags.", _call("translate"))
    return None


def _done(state: dict[str, Any], tool: str) -> bool:
    return bool(turn_results(state["messages"], tool))


def _what(request: Request, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> Step:
    if not state["audio"]["audible"]:
        return Step(answers.nothing_audible(state))
    step = _listen(state, settings)
    if step:
        return step
    heard = _heard(state, settings) or []
    if any(heard) and not state.get("detections") and not _done(state, "ground"):
        return Step("Look for the named objects in the frames.", _call("ground", phrases=heard))
    return Step(answers.what_is_sounding(state, heard, request, settings.oracle_phrases is not None))


def _segment(request: Request, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> Step:
    if not state["audio"]["audible"]:
        if not _done(state, "save"):
            return Step("Nothing is audible: the masks stay empty.", _call("save"))
        return Step(answers.nothing_audible(state) + "\n" + answers.written(state))
    step = _listen(state, settings)
    if step:
        return step
    heard = _heard(state, settings) or []
    current = state.get("phrases") == heard and bool(state.get("detections"))
    if not _done(state, "ground") and not current:
        return Step("Find what the audio names in the frames.", _call("ground", phrases=heard))
    if not state.get("masks_file"):
        return Step("Segment the boxes.", _call("segment"))
    if not state.get("critiqued"):
        return Step("Check the masks before answering.", _call("critique"))
    saved = _done(state, "save")
    refined = None
    if not saved and not state["attempts"][-1]["verdict"]["ok"] and rounds_left > 0:
        refined = refine(state, settings)
    if refined is not None:
        why, args = refined
        return Step(why, _call("ground", **args))
    if not saved:
        return Step("Keep the best critiqued round and write the outputs.", _call("save", source="best"))
    note = "" if any(heard) else "No sounding object was named in any frame."
    return Step(answers.segmented(state, note))


def _words(phrase: str) -> set[str]:
    return {w.rstrip("s") for w in phrase.split()}


def _names(phrase: str, objects: tuple[str, ...]) -> bool:
    """Whether a phrase is one of the objects ("grand piano" is a "piano"; "pianos" is too)."""
    return any(_words(o) <= _words(phrase) or _words(phrase) <= _words(o) for o in objects)


def edit_phrases(request: Request, base: list[list[str]]) -> list[list[str]]:
    """The phrases per frame a request asks for, starting from `base`. Applying it twice changes nothing more,
    which lets the handler recompute it at every step of the turn."""
    objects = request.objects
    if request.kind == "only":
        return [list(objects) for _ in base]
    if request.kind == "include":
        return [list(dict.fromkeys([*frame, *objects])) for frame in base]
    return [[p for p in frame if not _names(p, objects)] for frame in base]


def _edit(request: Request, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> Step:
    n = len(state["frames"])
    base = state.get("phrases") or _heard(state, settings) or [[] for _ in range(n)]
    target = edit_phrases(request, base)
    grounded = turn_results(state["messages"], "ground")
    if not grounded:
        if request.kind == "exclude" and target == base:
            return Step(answers.not_present(request, base))
        grounding = state.get("grounding") or {}
        args = {
            "phrases": target,
            "box_threshold": grounding.get("box_threshold", settings.box_threshold),
            "one_at_a_time": grounding.get("one_at_a_time", False),
        }
        return Step(_edit_reason(request, base, target), _call("ground", **args))
    missing = _missing(request, grounded[-1])
    box = (state.get("grounding") or {}).get("box_threshold", settings.box_threshold)
    if missing and len(grounded) == 1 and box > MIN_BOX_THRESHOLD:
        lower = max(MIN_BOX_THRESHOLD, round(box - THRESHOLD_STEP, 3))
        why = f"{answers.listing(missing)} found in no frame: lower the box threshold to {lower}, one phrase at a time."
        return Step(why, _call("ground", phrases=target, box_threshold=lower, one_at_a_time=True))
    if not state.get("masks_file"):
        return Step("Segment the boxes.", _call("segment"))
    if not state.get("critiqued"):
        return Step("Check the masks before answering.", _call("critique"))
    if not _done(state, "save"):
        return Step("Write the outputs.", _call("save"))
    return Step(answers.edited(state, request, state.get("phrases_before") or base, missing))


def _edit_reason(request: Request, base: list[list[str]], target: list[list[str]]) -> str:
    before = {p for frame in base for p in frame}
    after = {p for frame in target for p in frame}
    changes = [f"dropping {answers.listing(sorted(before - after))}" if before - after else "",
               f"adding {answers.listing(sorted(after - before))}" if after - before else ""]  # fmt: skip
    change = "; ".join(c for c in changes if c) or "no change"
    return f"The user asked {answers.asked_for(request)}: ground {answers.listing(sorted(after))} ({change})."


def _missing(request: Request, ground_result: dict[str, Any]) -> list[str]:
    """Objects the user named (to include or keep) that the last grounding found in no frame."""
    if request.kind == "exclude":
        return []
    found = {hit["phrase"] for frame in ground_result.get("frames", []) for hit in frame.get("found", [])}
    return [o for o in request.objects if o not in found]


_WHY_OBJECT = re.compile(
    r"\b(?:drop|dropped|remove|removed|exclude|excluded|include|included|add|added|keep|kept|pick|picked|choose|"
    r"chose|segment|segmented|find|found|miss|missed|ignore|ignored|mask|masked|select|selected|lose|lost|see|saw)"
    r"\s+(?:the\s+|a\s+|an\s+)?([a-z][a-z -]{0,40}?)(?:\s+(?:in|at|from|on)\b.*)?\W*$"
)


def why_subject(text: str, known: list[str]) -> str | None:
    """The object a "why" question is about: a known phrase it names, else the words after its verb."""
    hits = mentioned(text, known)
    if hits:
        return hits[0]
    match = _WHY_OBJECT.search(" ".join(text.lower().split()))
    return match.group(1).strip() if match else None


def _explain(request: Request, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> Step:
    results = turn_results(state["messages"], "explain")
    if not results:
        subject = why_subject(request.text, known_phrases(state))
        return Step("Read the trace.", _call("explain", **({"subject": subject} if subject else {})))
    return Step(answers.explained(results[-1]))


def _save(request: Request, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> Step:
    if not state.get("masks_file") and not state.get("attempts"):
        return Step(answers.nothing_to_save())
    if not _done(state, "save"):
        return Step("Write the outputs.", _call("save"))
    return Step(answers.saved(state))


def _help(request: Request, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> Step:
    return Step(HELP_TEXT)


def _unknown(request: Request, state: dict[str, Any], settings: AgentSettings, rounds_left: int) -> Step:
    return Step("I did not understand that, and no LLM is configured to answer free-form requests. " + HELP_TEXT)


HANDLERS: dict[str, Handler] = {
    "what": _what,
    "segment": _segment,
    "include": _edit,
    "exclude": _edit,
    "only": _edit,
    "explain": _explain,
    "save": _save,
    "help": _help,
    "unknown": _unknown,
}
