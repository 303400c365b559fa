"""What the built-in chat handler understands: a deterministic, keyword-based parser of one user line.

Used when no LLM is configured (and when the chat LLM fails). Only the user's own line is parsed, never a
caption, tag or tool result, so nothing heard or seen in the clip can steer it. The documented request set, in
the order the rules are tried (the first match wins; case does not matter):

=========  ====================================================  ==============================================
request    examples                                              what the handler does
=========  ====================================================  ==============================================
help       "help", "what can you do?"                            lists this set
explain    "why did you drop the piano?", "explain", "why?"      answers from the run's trace
save       "save", "save the masks", "write the outputs"         rewrites masks/, overlay.mp4 and result.json
exclude    "exclude the dog", "not the dog", "without the dog",  segments the current objects minus those
           "remove the dog", "drop the dog", "no dog"
only       "only the man", "just the man and the dog",           segments exactly those objects
           "segment the man"
include    "include the piano", "also the piano",                segments the current objects plus those
           "add the piano", "the piano too"
segment    "segment it", "segment everything", "mask them",      segments what the audio names, with critique
           "redo"                                                and refinement, like agent.solve
what       "what is making the sound?", "what is sounding at     answers from captions, tags and boxes, citing
           0:03?", "what do you hear in frame 2?"                frames and their timestamps
unknown    anything else                                         says what it can do and that an LLM (--llm)
                                                                 answers free-form requests
=========  ====================================================  ==============================================

Objects are short noun phrases: articles and fillers ("the", "please", "too") are dropped, several objects are
split on "and" and commas. Include, exclude and only apply to every frame. Frames are counted from 1, as the mask
files are; a time is "0:03", "3 s", "3.5 seconds" or "3s".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from tools.datamodel import frame_index_of

Kind = Literal["help", "explain", "save", "exclude", "only", "include", "segment", "what", "unknown"]
MAX_OBJECTS = 5
MAX_OBJECT_WORDS = 4

_GENERIC = {"it", "them", "everything", "all", "all of it", "the sound", "sound", "the sounds", "sounds", "again",
            "the sounding objects", "sounding objects", "the sources", "what you hear", "that", "this", ""}  # fmt: skip
_FILLERS = r"(?:please|too|as well|also|again|instead|then|now|back|in|out|of it|from it|from the masks|thanks)"
_ARTICLES = r"(?:the|a|an|that|this|those|these|some|any|my|his|her|their)"

_HELP = re.compile(r"^\s*(?:help|\?|commands|what can you do|what do you understand|how do i use (?:this|you))\b")
_EXPLAIN = re.compile(r"\b(?:why|explain|how come|how did you decide|what made you|reason)\b")
_SAVE = re.compile(r"^\s*(?:please\s+)?(?:save|write|export|store)\b")
_EXCLUDE = re.compile(
    r"\b(?:exclude|excluding|without|remove|drop|ignore|except|minus|leave out|take out|get rid of)\s+(.+)"
    r"|(?:^|\bbut\s+|\band\s+|,\s*)(?:not|no)\s+(.+)"  # "not the dog", "but not the dog"; not "what is not ..."
)
_ONLY = re.compile(r"\b(?:only|just|solely)\s+(.+)")
_INCLUDE = re.compile(r"\b(?:include|also|add|plus|as well as)\s+(.+)|^\s*(?:and\s+)?(.+?)\s+(?:too|as well)\W*$")
_SEGMENT = re.compile(r"\b(?:segment|mask|redo|re-?run|start over|find)\b(?:\s+(.+))?")
_WHAT = re.compile(
    r"\b(?:what|which|who|whom|where)\b.*\b(?:sound|sounding|noise|making|hear|heard|playing|speaking|singing|"
    r"talking|audible|source)|\b(?:is there|do you hear|can you hear|describe)\b"
)
_FRAME = re.compile(r"\bframe\s*#?\s*(\d+)\b")
_CLOCK = re.compile(r"\b(\d+):([0-5]\d(?:\.\d+)?)\b")
_SECONDS = re.compile(r"\b(?:at|around|near|after)?\s*(\d+(?:\.\d+)?)\s*(?:s|sec|secs|second|seconds)\b")


@dataclass(frozen=True)
class Request:
    """One parsed user line. `objects`: the noun phrases named (include, exclude, only); `frame`: a 0-based frame
    index the user pointed at; `time_s`: a time the user pointed at; `text`: the line as given."""

    kind: Kind
    text: str
    objects: tuple[str, ...] = field(default_factory=tuple)
    frame: int | None = None
    time_s: float | None = None


def parse_request(text: str) -> Request:
    """The request a user line makes (see the module table); never raises."""
    line = " ".join(text.lower().split())
    if _HELP.search(line):
        return Request("help", text)
    if _EXPLAIN.search(line):
        return Request("explain", text)
    if _SAVE.search(line):
        return Request("save", text)
    for kind, pattern in (("exclude", _EXCLUDE), ("only", _ONLY), ("include", _INCLUDE)):
        match = pattern.search(line)
        objects = object_phrases(next((g for g in match.groups() if g), "")) if match else ()
        if objects:
            return Request(kind, text, objects)
    segment = _SEGMENT.search(line)
    if segment and not _WHAT.search(line):
        target = _strip(segment.group(1) or "")
        if target in _GENERIC or target.startswith(("every", "all ")):
            return Request("segment", text)
        objects = object_phrases(target)
        return Request("only", text, objects) if objects else Request("segment", text)
    if _WHAT.search(line):
        frame, time_s = _focus(line)
        return Request("what", text, frame=frame, time_s=time_s)
    return Request("unknown", text)


def object_phrases(fragment: str) -> tuple[str, ...]:
    """Noun phrases in a fragment such as "the dog and the cat, please": lower case, without articles or fillers,
    at most MAX_OBJECTS of at most MAX_OBJECT_WORDS words each; pronouns and "everything" name no object."""
    parts = re.split(r",|;|\band\b|\bor\b|&|\+", fragment)
    phrases = []
    for part in parts:
        phrase = _strip(part)
        if phrase in _GENERIC or not re.search(r"[a-z]", phrase):
            continue
        phrases.append(" ".join(phrase.split()[:MAX_OBJECT_WORDS]))
    return tuple(dict.fromkeys(phrases))[:MAX_OBJECTS]


def _strip(fragment: str) -> str:
    """A fragment without punctuation, leading articles and trailing fillers."""
    words = re.sub(r"[^a-z0-9\s'-]", " ", fragment.lower())
    words = re.sub(r"\b(?:in|at|on|from|for)\s+(?:the\s+)?(?:frame|first|last|second|\d).*$", "", words)  # a place
    words = re.sub(rf"^\s*(?:{_ARTICLES}\s+)+", "", words)
    words = re.sub(rf"(?:(?:^|\s+){_FILLERS})+\s*$", "", words)
    words = re.sub(rf"^\s*(?:{_ARTICLES}\s+)+", "", words)  # "also the piano too" -> "piano"
    return " ".join(words.split()).strip("'-")


def _focus(line: str) -> tuple[int | None, float | None]:
    """The frame (0-based) or time a question points at, if any."""
    frame = _FRAME.search(line)
    if frame:
        return max(frame_index_of(int(frame.group(1))), 0), None
    clock = _CLOCK.search(line)
    if clock:
        return None, int(clock.group(1)) * 60 + float(clock.group(2))
    seconds = _SECONDS.search(line)
    if seconds:
        return None, float(seconds.group(1))
    return None, None


def mentioned(text: str, phrases: list[str]) -> list[str]:
    """The phrases (known objects) a line names, as whole words, in the order given."""
    line = " ".join(text.lower().split())
    return [p for p in dict.fromkeys(phrases) if p and re.search(rf"\b{re.escape(p.lower())}s?\b", line)]


HELP_TEXT = (
    "Without an LLM I understand: 'what is making the sound?' (optionally 'at 0:03' or 'in frame 2'), "
    "'segment it', 'only X', 'include X' / 'also X', 'exclude X' / 'not the X' / 'without X', "
    "'why ...?' / 'explain', 'save', and 'quit'. For free-form questions, configure an LLM with --llm MODEL "
    "(and --llm-base-url URL for an OpenAI-compatible server)."
)
