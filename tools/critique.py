"""Deterministic checks of a clip's masks and the typed verdict a critique ends with (pure, fast, no models).

`run_checks` looks at the masks, the phrases that were asked for and the audio evidence (captions, tagger labels)
and returns `Finding`s; `verdict_from_checks` scores them into a `Verdict`. A VLM's verdict (prompts/critique.py,
tools/critic.py) uses the same `Verdict` schema and the same fixed list of `Problem`s.

Checks, per frame (fractions are of the frame's H x W pixels):

| problem            | fires when                                                                              |
|--------------------|-----------------------------------------------------------------------------------------|
| empty_mask         | phrases were asked and the frame's union mask is empty (phrase None), or a phrase asked  |
|                    | found no box at all (phrase set)                                                        |
| full_frame         | the union covers >= full_frame_fraction of the frame                                    |
| tiny_mask          | an object covers < tiny_fraction of the frame (not reported in a frame already empty)    |
| area_jump          | a phrase asked in two neighbouring frames, with boxes in both, changes its area by a     |
|                    | factor >= area_jump_ratio (skipped when both areas are tiny); reported on the later frame |
| low_score          | an object's box score < low_score                                                        |
| unsupported_phrase | a phrase asked has no support in the frame's captions or tags (see `phrase_supported`)   |

wrong_object, missed_source, silent_object and bad_boundary need eyes: only the VLM reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.datamodel import FrameMasks, frame_number
from tools.lexicon import find_sources, frame_sources, phrase_for_label

__all__ = [
    "FACT_PROBLEMS",
    "PROBLEM_WEIGHTS",
    "CheckThresholds",
    "Finding",
    "Problem",
    "Verdict",
    "merge_verdicts",
    "phrase_supported",
    "run_checks",
    "suggestion_from_findings",
    "verdict_from_checks",
]


class Problem(StrEnum):
    """The fixed list of problems a critique can name; anything else a model writes is dropped."""

    EMPTY_MASK = "empty_mask"
    FULL_FRAME = "full_frame"
    TINY_MASK = "tiny_mask"
    AREA_JUMP = "area_jump"
    LOW_SCORE = "low_score"
    UNSUPPORTED_PHRASE = "unsupported_phrase"
    WRONG_OBJECT = "wrong_object"
    MISSED_SOURCE = "missed_source"
    SILENT_OBJECT = "silent_object"
    BAD_BOUNDARY = "bad_boundary"


FACT_PROBLEMS: frozenset[Problem] = frozenset({Problem.EMPTY_MASK, Problem.FULL_FRAME})
"""Problems measured, not judged: a verdict with one of them is never ok, whatever a VLM says."""

PROBLEM_WEIGHTS: dict[Problem, float] = {
    Problem.EMPTY_MASK: 1.0,
    Problem.FULL_FRAME: 1.0,
    Problem.WRONG_OBJECT: 1.0,
    Problem.MISSED_SOURCE: 1.0,
    Problem.SILENT_OBJECT: 1.0,
    Problem.AREA_JUMP: 0.5,
    Problem.TINY_MASK: 0.5,
    Problem.UNSUPPORTED_PHRASE: 0.5,
    Problem.BAD_BOUNDARY: 0.5,
    Problem.LOW_SCORE: 0.3,
}
"""How much of a frame a problem spoils: 1 = the frame's answer is wrong; 0.3 = merely doubtful (a low box score
on a mask that may well be right)."""

OK_SCORE = 0.7
"""verdict_from_checks: ok needs a score at least this high (and no FACT_PROBLEMS)."""

MAX_SUGGESTION_CHARS = 300


class Finding(BaseModel):
    """One thing a check found: what, where, the measured value and one line a human reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    problem: Problem
    frame_index: int | None = Field(description="clip frame index (FrameMasks.frame_index); None for the clip")
    phrase: str | None = Field(default=None, description="the phrase concerned, None for the whole frame")
    value: float | None = Field(
        default=None,
        description="the measurement: area fraction (empty_mask, full_frame, tiny_mask), area ratio (area_jump), "
        "box score (low_score); None for unsupported_phrase",
    )
    detail: str


class CheckThresholds(BaseModel):
    """Limits of the deterministic checks. Fractions are of the frame's pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    full_frame_fraction: float = Field(
        0.85, gt=0, le=1, description="union mask covering at least this much of the frame is a full_frame mask"
    )
    tiny_fraction: float = Field(
        0.002, ge=0, lt=1, description="an object below this is tiny (0.2%: 100 px of a 224 x 224 frame)"
    )
    area_jump_ratio: float = Field(
        4.0, gt=1, description="a phrase's area changing by this factor between neighbouring frames is a jump"
    )
    low_score: float = Field(
        0.35, ge=0, le=1, description="box scores below this are low (GroundingDINO keeps boxes from 0.25)"
    )
    min_tag_score: float = Field(
        0.1, ge=0, le=1, description="tagger labels scoring below this are noise, not support for a phrase"
    )


class Verdict(BaseModel):
    """The typed answer of a critique: is the clip's answer good, how sure, what is wrong where, what to try."""

    model_config = ConfigDict(extra="forbid")

    ok: bool
    score: float = Field(ge=0, le=1, description="1 = the masks are right")
    problems: list[Problem] = Field(default_factory=list)
    frames: list[int] = Field(default_factory=list, description="clip frame indices concerned, ascending")
    suggestion: str = Field(default="", max_length=MAX_SUGGESTION_CHARS)
    source: Literal["checks", "vlm", "checks_fallback"]
    notes: str = ""


# ------------------------------------------------------------------------------------------------------- checks


def run_checks(
    masks: Sequence[FrameMasks],
    phrases: Sequence[Sequence[str]],
    captions: Sequence[Sequence[str]],
    tags: Sequence[Sequence[tuple[str, float]]],
    thresholds: CheckThresholds | None = None,
) -> list[Finding]:
    """Findings of every check over a clip, frame by frame in order (see the module table).

    masks[i]: frame i's objects; phrases[i]: what was asked in frame i; captions[i] / tags[i]: frame i's audio
    evidence (captions texts; (label, score) pairs). captions and tags may each be empty as a whole (not
    available). The support check is skipped when the clip has no evidence at all (no caption text and no tag in
    any frame, e.g. phrases a user typed); otherwise a frame without evidence supports nothing. Neighbouring frames
    are neighbours in `masks`.
    """
    limits = thresholds or CheckThresholds()
    n = len(masks)
    if len(phrases) != n:
        raise ValueError(f"phrases cover {len(phrases)} frames, masks {n}")
    for name, evidence in (("captions", captions), ("tags", tags)):
        if len(evidence) not in (0, n):
            raise ValueError(f"{name} cover {len(evidence)} frames, masks {n} (give all frames or none)")
    heard = any(c.strip() for frame in captions for c in frame) or any(frame for frame in tags)
    findings: list[Finding] = []
    for i, frame in enumerate(masks):
        findings += _frame_findings(frame, phrases[i], limits)
        if heard:
            frame_captions = captions[i] if captions else ()
            frame_tags = tags[i] if tags else ()
            findings += _support_findings(frame.frame_index, phrases[i], frame_captions, frame_tags, limits)
        if i:
            findings += _jump_findings(masks[i - 1], frame, phrases[i - 1], phrases[i], limits)
    return findings


def _frame_findings(frame: FrameMasks, asked: Sequence[str], limits: CheckThresholds) -> list[Finding]:
    """empty_mask, full_frame, tiny_mask and low_score of one frame."""
    f, number = frame.frame_index, frame_number(frame.frame_index)
    pixels = frame.height * frame.width
    union = frame.union_area / pixels if pixels else 0.0
    found: list[Finding] = []
    empty = bool(asked) and union == 0
    if empty:
        verb = "was" if len(asked) == 1 else "were"
        found.append(
            Finding(
                problem=Problem.EMPTY_MASK,
                frame_index=f,
                value=0.0,
                detail=f"frame {number}: the answer is empty although {_quoted(asked)} {verb} asked",
            )
        )
    boxed = {obj.phrase for obj in frame.objects}
    for phrase in dict.fromkeys(asked):
        if phrase not in boxed:
            found.append(
                Finding(
                    problem=Problem.EMPTY_MASK,
                    frame_index=f,
                    phrase=phrase,
                    value=0.0,
                    detail=f"frame {number}: {_quoted([phrase])} found no box",
                )
            )
    if union >= limits.full_frame_fraction:
        found.append(
            Finding(
                problem=Problem.FULL_FRAME,
                frame_index=f,
                value=round(float(union), 4),
                detail=f"frame {number}: the masks cover {union:.0%} of the frame",
            )
        )
    for obj in frame.objects:
        share = obj.area / pixels if pixels else 0.0
        if not empty and share < limits.tiny_fraction:
            found.append(
                Finding(
                    problem=Problem.TINY_MASK,
                    frame_index=f,
                    phrase=obj.phrase,
                    value=round(share, 6),
                    detail=f"frame {number}: the mask of {_quoted([obj.phrase])} covers only {share:.2%} of the frame",
                )
            )
        if obj.box_score < limits.low_score:
            found.append(
                Finding(
                    problem=Problem.LOW_SCORE,
                    frame_index=f,
                    phrase=obj.phrase,
                    value=round(float(obj.box_score), 4),
                    detail=f"frame {number}: the box of {_quoted([obj.phrase])} scores {obj.box_score:.2f}",
                )
            )
    return found


def _jump_findings(
    before: FrameMasks,
    after: FrameMasks,
    asked_before: Sequence[str],
    asked_after: Sequence[str],
    limits: CheckThresholds,
) -> list[Finding]:
    """area_jump for each phrase asked, and boxed, in both neighbouring frames.

    Per phrase rather than per union: a union legitimately changes when the set of sounding objects changes.
    The ratio is larger area / max(smaller area, tiny_fraction), so a mask vanishing to nothing is a finite jump.
    """
    found: list[Finding] = []
    for phrase in dict.fromkeys(p for p in asked_after if p in asked_before):
        a, b = _phrase_fraction(before, phrase), _phrase_fraction(after, phrase)
        if a is None or b is None or (a < limits.tiny_fraction and b < limits.tiny_fraction):
            continue  # no box on one side is an empty_mask already; two tiny masks are reported as tiny
        ratio = max(a, b) / max(min(a, b), limits.tiny_fraction, 1e-12)
        if ratio >= limits.area_jump_ratio:
            found.append(
                Finding(
                    problem=Problem.AREA_JUMP,
                    frame_index=after.frame_index,
                    phrase=phrase,
                    value=round(ratio, 2),
                    detail=f"frames {frame_number(before.frame_index)}-{frame_number(after.frame_index)}: the mask of "
                    f"{_quoted([phrase])} goes from {a:.1%} to {b:.1%} of the frame (x{ratio:.1f})",
                )
            )
    return found


def _phrase_fraction(frame: FrameMasks, phrase: str) -> float | None:
    """Share of the frame covered by the union of `phrase`'s objects; None when the phrase has no object."""
    area = frame.phrase_areas.get(phrase)
    if area is None:
        return None
    pixels = frame.height * frame.width
    return area / pixels if pixels else 0.0


def _support_findings(
    frame_index: int,
    asked: Sequence[str],
    captions: Sequence[str],
    tags: Sequence[tuple[str, float]],
    limits: CheckThresholds,
) -> list[Finding]:
    """unsupported_phrase for each phrase of one frame the audio evidence does not name."""
    return [
        Finding(
            problem=Problem.UNSUPPORTED_PHRASE,
            frame_index=frame_index,
            phrase=phrase,
            detail=f"frame {frame_number(frame_index)}: {_quoted([phrase])} is not named by the frame's audio captions "
            "or tags",
        )
        for phrase in dict.fromkeys(asked)
        if not phrase_supported(phrase, captions, tags, limits.min_tag_score)
    ]


# "person" is the lexicon's phrase for a human of unknown gender or age: it and any specific human support each
# other ("speech" -> person supports "man"); two specific humans do not ("a baby cries" does not support "man").
_ANY_HUMAN = "person"
_HUMANS = frozenset({"person", "man", "woman", "boy", "girl", "child", "baby", "crowd"})


def phrase_supported(
    phrase: str, captions: Iterable[str], tags: Iterable[tuple[str, float]], min_tag_score: float = 0.1
) -> bool:
    """Whether the audio evidence names `phrase`'s source.

    Evidence: the lexicon's sources of the captions judged together (tools.lexicon.frame_sources: "a dog barks"
    -> dog, "a person plays the guitar" -> guitar) and of tag labels scoring >= min_tag_score (phrase_for_label:
    "Dog" -> dog). The phrase matches through its own lexicon sources ("acoustic guitar" -> guitar), or literally:
    it equals a tag label, or, for nouns the lexicon does not know, appears as whole words in a caption. "person"
    and any specific human support each other.
    """
    captions = [c for c in captions if c]
    tags = [(label, score) for label, score in tags if score >= min_tag_score]
    key = " ".join(phrase.lower().split())
    if not key:
        return False
    known = find_sources(key)
    wanted = {key, *known}
    heard = set(frame_sources(captions)) | {p for label, _ in tags if (p := phrase_for_label(label))}
    if wanted & heard:
        return True
    humans_heard, humans_wanted = heard & _HUMANS, wanted & _HUMANS
    if humans_heard and humans_wanted and _ANY_HUMAN in humans_heard | humans_wanted:
        return True
    if any(" ".join(label.lower().split()) == key for label, _ in tags):
        return True
    if known:
        return False  # a noun the lexicon knows was judged by it, negation included ("no cat barks")
    words = re.compile(r"\b" + r"\s+".join(map(re.escape, key.split())) + r"\b")
    return any(words.search(caption.lower()) for caption in captions)


# ------------------------------------------------------------------------------------------------------ verdict


def verdict_from_checks(findings: Sequence[Finding], n_frames: int) -> Verdict:
    """The deterministic verdict of a clip of `n_frames` frames.

    score = 1 - (sum over frames with findings of the largest PROBLEM_WEIGHTS among that frame's findings) / n_frames
    (clip-level findings, frame None, count as one more frame), clipped to [0, 1]: the weighted share of frames
    whose answer is spoiled. A frame counts once however many findings it has. ok = score >= OK_SCORE (0.7) and no
    FACT_PROBLEMS (empty_mask, full_frame). The suggestion groups the findings by kind and phrase, worst first.
    """
    if n_frames < 1:
        raise ValueError("a verdict needs at least one frame")
    worst: dict[int | None, float] = {}
    for finding in findings:
        weight = PROBLEM_WEIGHTS[finding.problem]
        worst[finding.frame_index] = max(worst.get(finding.frame_index, 0.0), weight)
    score = min(1.0, max(0.0, 1.0 - sum(worst.values()) / n_frames))
    problems = _ordered_problems(f.problem for f in findings)
    return Verdict(
        ok=score >= OK_SCORE and not FACT_PROBLEMS & set(problems),
        score=round(score, 4),
        problems=problems,
        frames=sorted({f.frame_index for f in findings if f.frame_index is not None}),
        suggestion=suggestion_from_findings(findings),
        source="checks",
    )


def _ordered_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Distinct problems in the fixed list's order."""
    present = set(problems)
    return [p for p in Problem if p in present]


# What to try for each kind of finding; {phrase} is the quoted phrase (or "the phrases" for a frame-level one).
_ADVICE: dict[tuple[Problem, bool], str] = {
    (Problem.EMPTY_MASK, True): "{phrase} found no box; try a synonym or drop it",
    (Problem.EMPTY_MASK, False): "empty answer; lower the box threshold or revise the phrases",
    (Problem.FULL_FRAME, False): "the mask covers the whole frame; use a more specific phrase",
    (Problem.TINY_MASK, True): "{phrase} mask is tiny; check its box or drop it",
    (Problem.AREA_JUMP, True): "{phrase} area jumps between frames; re-ground or propagate from the best frame",
    (Problem.LOW_SCORE, True): "{phrase} box score is low; verify or rephrase",
    (Problem.UNSUPPORTED_PHRASE, True): "{phrase} is not heard in the audio; drop it",
}


def suggestion_from_findings(findings: Sequence[Finding]) -> str:
    """One line of advice, <= 300 characters: findings grouped by (problem, phrase), heaviest problems first,
    e.g. "frames 2, 3: 'piano' found no box; try a synonym or drop it"."""
    if not findings:
        return "no problems found by the checks"
    groups: dict[tuple[Problem, str | None], list[int]] = {}
    for finding in findings:
        frames = groups.setdefault((finding.problem, finding.phrase), [])
        if finding.frame_index is not None and finding.frame_index not in frames:
            frames.append(finding.frame_index)
    first_seen = {key: n for n, key in enumerate(groups)}
    order = sorted(groups, key=lambda key: (-PROBLEM_WEIGHTS[key[0]], first_seen[key]))
    parts = []
    for problem, phrase in order:
        advice = _ADVICE.get((problem, phrase is not None), problem.value.replace("_", " "))
        numbers = [str(frame_number(k)) for k in sorted(groups[(problem, phrase)])]
        where = f"frame {numbers[0]}" if len(numbers) == 1 else f"frames {', '.join(numbers)}" if numbers else ""
        text = advice.format(phrase=_quoted([phrase]) if phrase else "")
        parts.append(f"{where}: {text}" if where else text)
    return _clip("; ".join(parts), MAX_SUGGESTION_CHARS)


def _quoted(phrases: Sequence[str]) -> str:
    """'dog', 'piano' with each phrase flattened to one line and cut at 40 characters (phrases are model output)."""
    return ", ".join(repr(_clip(" ".join(p.split()), 40)) for p in phrases)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def merge_verdicts(vlm: Verdict, checks: Verdict, findings: Sequence[Finding]) -> Verdict:
    """The final verdict when a VLM answered: the VLM's judgement, overruled where the checks measured a fact.

    problems = the VLM's problems + the FACT_PROBLEMS the checks found (a VLM may miss an empty mask in a frame it
    was not shown); frames = the VLM's frames + those of the fact findings; score = the VLM's score, capped at
    the checks' score when the checks found a fact (an empty or full-frame mask spoils its frames whatever the VLM
    thinks); ok = the VLM's ok and no fact; suggestion = the VLM's, then the checks' advice on the facts.
    """
    facts = [f for f in findings if f.problem in FACT_PROBLEMS]
    if not facts:
        return vlm.model_copy(update={"source": "vlm"})
    fact_problems = _ordered_problems(f.problem for f in facts)
    advice = "; ".join(s for s in (vlm.suggestion, suggestion_from_findings(facts)) if s)
    return Verdict(
        ok=False,
        score=min(vlm.score, checks.score),
        problems=_ordered_problems([*vlm.problems, *fact_problems]),
        frames=sorted({*vlm.frames, *(f.frame_index for f in facts if f.frame_index is not None)}),
        suggestion=_clip(advice, MAX_SUGGESTION_CHARS),
        source="vlm",
        notes=f"{', '.join(fact_problems)} measured by the checks added to the VLM's verdict; score capped at the "
        f"checks' {checks.score:.2f}",
    )
