"""The built-in planner's refinement policy: each finding leads to the documented change, never a repeat."""

from __future__ import annotations

from graphs.context import AgentSettings
from graphs.planners import refine
from tests.fakes import fake_spec

SETTINGS = AgentSettings(
    profile="test",
    captioner=fake_spec("captioner"),
    tagger=None,
    grounder=fake_spec("grounder"),
    segmenter=fake_spec("segmenter"),
)


def _state(phrases, problems, box=0.25, one_at_a_time=False, earlier=()):
    findings = [{"problem": p, "frame_index": f, "phrase": ph} for p, f, ph in problems]
    attempt = {
        "phrases": phrases,
        "grounding": {"box_threshold": box, "one_at_a_time": one_at_a_time},
        "findings": findings,
        "verdict": {"ok": False, "score": 0.2},
    }
    return {"attempts": [*earlier, attempt]}


def test_unsupported_phrases_are_dropped_but_never_the_last_one() -> None:
    why, args = refine(
        _state([["dog", "car"], ["car"]], [("unsupported_phrase", 0, "car"), ("unsupported_phrase", 1, "car")]),
        SETTINGS,
    )
    assert args["phrases"] == [["dog"], ["car"]] and "'car' (frames 1)" in why


def test_empty_masks_lower_the_threshold_and_ground_one_at_a_time() -> None:
    _, args = refine(_state([["dog", "piano"]], [("empty_mask", 0, "piano")]), SETTINGS)
    assert args == {"phrases": [["dog", "piano"]], "box_threshold": 0.2, "one_at_a_time": True}
    _, floor = refine(_state([["dog"]], [("empty_mask", 0, "dog")], box=0.16), SETTINGS)
    assert floor["box_threshold"] == 0.15


def test_full_frame_or_low_scores_raise_the_threshold() -> None:
    for problem in ("full_frame", "low_score"):
        _, args = refine(_state([["dog"]], [(problem, 0, None)]), SETTINGS)
        assert args["box_threshold"] == 0.3 and args["one_at_a_time"] is False


def test_area_jumps_use_the_same_phrases_in_every_frame() -> None:
    _, args = refine(_state([["dog"], ["dog", "man"], []], [("area_jump", 1, "dog")]), SETTINGS)
    assert args["phrases"] == [["dog", "man"]] * 3


def test_nothing_new_to_try_ends_refinement() -> None:
    assert refine(_state([["dog"]], [("tiny_mask", 0, "dog")]), SETTINGS) is None
    tried = _state([["dog"]], [], box=0.2, one_at_a_time=True)["attempts"]
    assert refine(_state([["dog"]], [("empty_mask", 0, "dog")], box=0.25, earlier=tried), SETTINGS) is None
