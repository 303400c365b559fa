"""The critique step (DESIGN.md data flow 6): deterministic checks first, then, when a VLM is given, its verdict on
a bounded set of frames and overlays, parsed into the same typed `Verdict`.

A VLM answer that does not parse is sent back once with a correction; a second unusable answer leaves the
verdict to the checks (source "checks_fallback", notes saying so) - the critic still answers, and the trace has
both attempts. A VLM that cannot be reached is an error (ModelUnavailableError), not a silent fallback.

Frames and overlays may be given as images or as file paths (the run folder's handles): only the few frames shown
to the VLM are ever opened. The VLM adapters live in tools/models/critics.py (re-exported here lazily).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from prompts.critique import (
    PROMPT_VERSION,
    ShownImage,
    VerdictParseError,
    parse_verdict,
    render_correction,
    render_critique_messages,
)
from prompts.translate import PromptMessage
from tools.critique import (
    PROBLEM_WEIGHTS,
    CheckThresholds,
    Finding,
    Verdict,
    merge_verdicts,
    run_checks,
    verdict_from_checks,
)
from tools.datamodel import FrameMasks
from tools.models.base import Usage
from tools.translate import CallRecord

__all__ = ["Critic", "CritiqueCall", "CritiqueResult", "VisionJudge", "choose_frames"]

MAX_ATTEMPTS = 2
"""VLM calls per critique: the first, and one retry with a correction after an unparseable answer."""

ImageRef = Image.Image | str | Path
"""An RGB image, or the path of an image file."""


def __getattr__(name: str) -> Any:
    """The VLM adapters, imported on first use: tools.models.critics loads transformers' Qwen2.5-VL classes."""
    if name in {"OpenAIVlmCritic", "TransformersVlmCritic"}:
        from tools.models import critics

        return getattr(critics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@runtime_checkable
class VisionJudge(Protocol):
    """A VLM that answers a conversation about images (tools/models/critics.py)."""

    model_id: str
    max_images: int

    def judge(self, images: Sequence[Image.Image], messages: Sequence[PromptMessage]) -> tuple[str, Usage]:
        """The answer text and its token counts; images go before the first user message's text."""
        ...


class CritiqueCall(CallRecord):
    """One VLM call of a critique; `frames` are the clip frames shown, `images` what each image was."""

    images: list[str] = Field(default_factory=list, description='e.g. "frame 3 with the masks", in order')


class CritiqueResult(BaseModel):
    """A critique's verdict with everything the trace needs."""

    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    findings: list[Finding]
    calls: list[CritiqueCall] = Field(default_factory=list)
    model_id: str | None = Field(default=None, description="the VLM's model id, None without a VLM")
    prompt_version: str | None = None

    @property
    def usage(self) -> Usage:
        """Token totals over all VLM calls, failed attempts included (they were paid for)."""
        return Usage(sum(c.input_tokens for c in self.calls), sum(c.output_tokens for c in self.calls))


class Critic:
    """Checks a clip's masks and, given a VLM, asks it to judge them. Holds no state between critiques.

    vlm / max_images: the defaults of `critique` (a VisionJudge, or None for checks only; images per VLM call).
    """

    def __init__(
        self, vlm: VisionJudge | None = None, max_images: int = 4, thresholds: CheckThresholds | None = None
    ) -> None:
        self.vlm = vlm
        self.max_images = max_images
        self.thresholds = thresholds or CheckThresholds()

    def critique(
        self,
        frames: Sequence[ImageRef],
        overlays: Sequence[ImageRef],
        masks: Sequence[FrameMasks],
        phrases: Sequence[Sequence[str]],
        captions: Sequence[Sequence[str]],
        tags: Sequence[Sequence[tuple[str, float]]],
        vlm: VisionJudge | None = None,
        max_images: int | None = None,
    ) -> CritiqueResult:
        """The verdict on one clip's answer.

        frames[i] / overlays[i]: frame i of `masks` plain and with its masks drawn (tools.overlay), as RGB images or
        file paths; needed only with a VLM; overlays may be empty (then drawn here from the masks).
        phrases / captions / tags: per frame, as for tools.critique.run_checks.
        vlm / max_images: override the critic's own; max_images is also capped by the VLM's. See `choose_frames`.
        """
        vlm = vlm or self.vlm
        max_images = self.max_images if max_images is None else max_images
        findings = run_checks(masks, phrases, captions, tags, self.thresholds)
        checks = verdict_from_checks(findings, len(masks))
        if vlm is None:
            return CritiqueResult(verdict=checks, findings=findings)
        if len(frames) != len(masks) or len(overlays) not in (0, len(masks)):
            raise ValueError(f"got {len(frames)} frames and {len(overlays)} overlays for {len(masks)} masked frames")
        budget = min(max_images, vlm.max_images)
        if budget < 1:
            raise ValueError("a VLM critique needs max_images >= 1")
        chosen = choose_frames(findings, masks, budget)
        shown, images = self._images(chosen, budget, frames, overlays, masks)
        messages = render_critique_messages(
            shown,
            [masks[i].frame_index for i in chosen],
            [phrases[i] for i in chosen],
            [captions[i] for i in chosen] if captions else [[] for _ in chosen],
            findings,
            len(masks),
        )
        calls: list[CritiqueCall] = []
        verdict = self._ask(vlm, images, shown, messages, masks, calls)
        if verdict is None:
            verdict = checks.model_copy(
                update={
                    "source": "checks_fallback",
                    "notes": f"VLM answer malformed twice ({calls[-1].error}); verdict from checks",
                }
            )
        else:
            verdict = merge_verdicts(verdict, checks, findings)
        return CritiqueResult(
            verdict=verdict, findings=findings, calls=calls, model_id=vlm.model_id, prompt_version=PROMPT_VERSION
        )

    def _ask(
        self,
        vlm: VisionJudge,
        images: list[Image.Image],
        shown: list[ShownImage],
        messages: list[PromptMessage],
        masks: Sequence[FrameMasks],
        calls: list[CritiqueCall],
    ) -> Verdict | None:
        """The VLM's parsed verdict, or None after MAX_ATTEMPTS unusable answers; every call recorded in `calls`."""
        conversation = list(messages)
        known = {m.frame_index for m in masks}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            started = time.perf_counter()
            text, usage = vlm.judge(images, conversation)
            call = CritiqueCall(
                frames=sorted({s.frame for s in shown}),
                attempt=attempt,
                messages=list(conversation),
                response=text,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                ms=round((time.perf_counter() - started) * 1000, 1),
                images=[s.label for s in shown],
            )
            calls.append(call)
            try:
                verdict = parse_verdict(text, max(known) + 1)
            except VerdictParseError as err:
                call.error = err.reason
                conversation += [PromptMessage("assistant", text), render_correction(err.reason)]
                continue
            return verdict.model_copy(update={"frames": [f for f in verdict.frames if f in known]})
        return None

    @staticmethod
    def _images(
        chosen: list[int],
        budget: int,
        frames: Sequence[ImageRef],
        overlays: Sequence[ImageRef],
        masks: Sequence[FrameMasks],
    ) -> tuple[list[ShownImage], list[Image.Image]]:
        """Per chosen frame, the frame then its overlay while two images fit, else the overlay alone; opened here."""
        shown: list[ShownImage] = []
        images: list[Image.Image] = []
        for i in chosen:
            plain = _open(frames[i])
            overlay = _open(overlays[i]) if overlays else _render(plain, masks[i])
            index = masks[i].frame_index
            if budget - len(images) >= 2:
                shown += [ShownImage(index, "frame"), ShownImage(index, "overlay")]
                images += [plain, overlay]
            elif budget - len(images) == 1:
                shown.append(ShownImage(index, "overlay"))
                images.append(overlay)
        return shown, images


def choose_frames(findings: Sequence[Finding], masks: Sequence[FrameMasks], max_images: int) -> list[int]:
    """Positions in `masks` of the frames to show, ascending: ceil(max_images / 2) frames (a frame and its
    overlay each), those with findings first (heaviest problem first, then earliest), the rest spread evenly
    over the other frames."""
    k = min(len(masks), (max_images + 1) // 2)
    position = {m.frame_index: i for i, m in enumerate(masks)}
    worst: dict[int, float] = {}
    for finding in findings:
        if finding.frame_index in position:
            i = position[finding.frame_index]
            worst[i] = max(worst.get(i, 0.0), PROBLEM_WEIGHTS[finding.problem])
    chosen = sorted(worst, key=lambda i: (-worst[i], i))[:k]
    rest = [i for i in range(len(masks)) if i not in worst]
    need = k - len(chosen)
    if need > 0:
        # Centred picks: with 10 frames and 2 slots, positions 2 and 7.
        chosen += [rest[round((j + 0.5) * len(rest) / need - 0.5)] for j in range(need)]
    return sorted(chosen)


def _open(image: ImageRef) -> Image.Image:
    """An RGB image in memory (files are read and closed at once)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as opened:
        return opened.convert("RGB")


def _render(image: Image.Image, frame: FrameMasks) -> Image.Image:
    from tools.overlay import render_overlay  # deferred: it imports PyAV, which only overlay rendering needs

    return render_overlay(image, [o.mask for o in frame.objects], [o.phrase for o in frame.objects])
