"""Answers to "why" from the run's trace: its records turned into short, ordered events a person reads.

Events come from the user's requests (chat_turn records), the planner's decisions and their reasons, what each
grounding found and missed, the translator's phrases and the critiques. A subject (an object such as "piano")
keeps the events that mention it, together with the request and the refinements of each turn they belong to,
because those are often the reason (the user asked for "only the man"; a refinement dropped a phrase the audio
does not support).
"""

from __future__ import annotations

import re
from typing import Any

from graphs.chat_format import findings_text, frame_numbers, listing, quote
from tools.datamodel import frame_index_of

MAX_EVENTS = 12
REFINE_PREFIX = "Refine:"
"""How graphs/planners.refine states its reasons."""
CONTEXT_KINDS = ("request", "refine")
_QUIET_ACTIONS = {"answer", "save", "explain", "describe_audio", "tag_audio", "translate", "segment", "critique"}
"""Decisions whose reason only restates the step; the step's own event says more."""


def trace_events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every explainable event of a trace, in order: {turn, round, kind, text}."""
    events: list[dict[str, Any]] = []
    turn = 0
    first_number = 0  # a trace without frames_from was written when tool results counted frames from 0
    for record in records:
        kind, name = record.get("kind"), record.get("name")
        if kind == "run_start":
            first_number = record.get("frames_from", 0)
            continue
        if kind == "chat_turn":
            turn = record.get("turn", turn + 1)
            text = f"you asked {quote(record.get('text', ''), 120)}"
        elif kind == "decision" and record.get("action") not in _QUIET_ACTIONS:
            reason = str(record.get("reason", ""))
            text = f"decided to {record.get('action')}: {reason}".rstrip(": ")
            kind = "refine" if reason.startswith(REFINE_PREFIX) else kind
        elif kind == "tool_call" and name == "ground" and not record.get("error"):
            text = _grounding_text(record, first_number)
        elif kind == "tool_call" and name == "translate" and not record.get("error"):
            text = _translation_text(record)
        elif kind == "critique":
            text = _critique_text(record)
        else:
            continue
        events.append({"turn": turn, "round": record.get("round"), "kind": _KINDS.get(kind, kind), "text": text})
    return events


_KINDS = {"chat_turn": "request", "tool_call": "result"}


def explain_trace(records: list[dict[str, Any]], subject: str | None, before_turn: int | None = None) -> dict[str, Any]:
    """The events that explain `subject` (all when None or when nothing mentions it), the last MAX_EVENTS;
    `before_turn` leaves out that turn and later ones (the question being asked is no explanation)."""
    events = [e for e in trace_events(records) if before_turn is None or e["turn"] < before_turn]
    chosen = events
    matched = False
    if subject and subject.strip():
        pattern = re.compile(rf"\b{re.escape(subject.strip().lower())}s?\b")
        hits = [e for e in events if pattern.search(e["text"].lower())]
        turns = {e["turn"] for e in hits}
        # A turn's request and refinements are context of its hits: "only the man" explains why the piano went,
        # "Refine: drop 'trumpet' ..." why only the bus was left.
        chosen = [e for e in events if e in hits or (e["kind"] in CONTEXT_KINDS and e["turn"] in turns)]
        matched = bool(hits)
        if not matched:
            chosen = events
    return {"subject": subject, "matched": matched, "events": chosen[-MAX_EVENTS:], "total_events": len(events)}


def _grounding_text(record: dict[str, Any], first_number: int) -> str:
    """What one ground tool call looked for, found and missed; its result numbers frames from `first_number`."""
    arguments = record.get("arguments", {})
    frames = record.get("result", {}).get("frames", [])
    asked = list(dict.fromkeys(p for frame in arguments.get("phrases", []) for p in frame))
    found: dict[str, list[float]] = {}
    missed: dict[str, list[int]] = {}
    for frame in frames:
        for hit in frame.get("found", []):
            found.setdefault(hit["phrase"], []).append(hit["score"])
        for phrase in frame.get("not_found", []):
            missed.setdefault(phrase, []).append(frame_index_of(frame["frame"], first_number))
    how = f"box threshold {arguments.get('box_threshold')}" + (
        ", one phrase at a time" if arguments.get("one_at_a_time") else ""
    )
    found_text = listing([f"{p} (best score {max(s):.2f})" for p, s in found.items()])
    missed_text = "; not found: " + listing([f"{p} in frames {frame_numbers(k)}" for p, k in missed.items()])
    return f"looked for {listing(asked)} ({how}): found {found_text}" + (missed_text if missed else "")


def _translation_text(record: dict[str, Any]) -> str:
    frames = record.get("result", {}).get("frames", [])
    named = list(dict.fromkeys(p for frame in frames for p in frame.get("phrases", [])))
    return f"the translator named {listing(named)} from the audio"


def _critique_text(record: dict[str, Any]) -> str:
    verdict = record.get("verdict", {})
    state = "ok" if verdict.get("ok") else "not ok"
    findings = record.get("findings", [])
    suffix = f": {findings_text(findings)}" if findings else ""
    return f"the critique was {state} (score {verdict.get('score', 0):.2f}){suffix}"
