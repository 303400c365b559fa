"""Fakes for the AVSBench runner tests (a helper module, not a test), and a script entry that runs the runner's
command line with them: `python tests/avsbench_fakes.py [--slow S] CLI_ARGS...` (repo root on PYTHONPATH).

ColourGrounder finds the rectangles evals.synthetic draws: each class has its own saturated colour
(evals.synthetic.class_colour), so a phrase's box is the bounding box of its colour's pixels; with
`any_colour`, every phrase gets a box around each saturated colour in the frame.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from evals.datasets.categories import S4_CATEGORIES, s4_class_name
from evals.synthetic import class_colour
from graphs.context import PipelineSettings
from tests.fakes import BoxSegmenter, ScriptedCaptioner, fake_spec
from tools.datamodel import Detections
from tools.models.registry import ModelRegistry

SATURATION_GAP = 60  # grey background and the white disc have max - min == 0; class colours about 200


def s4_colours() -> dict[str, tuple[int, int, int]]:
    """Oracle phrase of every S4 category -> the colour evals.synthetic draws it in (class index = position + 1)."""
    return {s4_class_name(c): class_colour(i + 1) for i, c in enumerate(S4_CATEGORIES)}


def saturated_colours(rgb: np.ndarray) -> list[tuple[int, int, int]]:
    """The distinct strongly coloured pixels' colours of an (H, W, 3) frame."""
    flat = rgb.reshape(-1, 3).astype(np.int64)
    strong = flat[flat.max(axis=1) - flat.min(axis=1) > SATURATION_GAP]
    return [tuple(int(v) for v in c) for c in np.unique(strong, axis=0)]


class ColourGrounder:
    """Boxes around the pixels of each phrase's colour; raises for a phrase in `fail_on` (a failing clip)."""

    def __init__(
        self,
        colours: dict[str, tuple[int, int, int]] | None = None,
        *,
        any_colour: bool = False,
        fail_on: Sequence[str] = (),
    ) -> None:
        self.spec = fake_spec("grounder")
        self.colours = colours or {}
        self.any_colour = any_colour
        self.fail_on = set(fail_on)
        self.phrases_seen: list[list[str]] = []

    def detect(
        self,
        images: Sequence[Image.Image],
        phrases: Sequence[Sequence[str]],
        frame_indices: Sequence[int],
        box_threshold: float,
        text_threshold: float,
    ) -> list[Detections]:
        out = []
        for image, frame_phrases, index in zip(images, phrases, frame_indices, strict=True):
            self.phrases_seen.append(list(frame_phrases))
            rgb = np.asarray(image.convert("RGB"))
            boxes, scores, names = [], [], []
            for phrase in frame_phrases:
                if phrase in self.fail_on:
                    raise RuntimeError(f"scripted grounder failure on {phrase!r}")
                targets = [self.colours[phrase]] if phrase in self.colours else []
                if self.any_colour:
                    targets = saturated_colours(rgb)
                for colour in targets:
                    ys, xs = np.nonzero(np.all(rgb == np.array(colour, dtype=rgb.dtype), axis=-1))
                    if len(ys):
                        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                        scores.append(0.9)
                        names.append(phrase)
            out.append(Detections(index, np.array(boxes, dtype=float).reshape(-1, 4), scores, names))
        return out


class SlowSegmenter(BoxSegmenter):
    """BoxSegmenter that takes `delay_s` per call, so a test can kill the process in the middle of a run."""

    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def segment(self, image: Image.Image, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.delay_s)
        return super().segment(image, boxes)


class FakeModels:
    """A registry holding a scripted captioner, a grounder and a (possibly slow) box segmenter, and the settings
    naming them (no tagger; the built-in lexicon translates the captions)."""

    def __init__(self, grounder: ColourGrounder, captions: Sequence[str] = ("a dog is barking",), delay_s: float = 0.0):
        self.captioner = ScriptedCaptioner(list(captions))
        self.grounder = grounder
        self.segmenter = SlowSegmenter(delay_s) if delay_s else BoxSegmenter()
        self.registry = ModelRegistry("cpu")
        for fake in (self.captioner, self.grounder, self.segmenter):
            self.registry.install(fake.spec, fake)
        self.settings = PipelineSettings(
            profile="fake",
            captioner=self.captioner.spec,
            tagger=None,
            grounder=self.grounder.spec,
            segmenter=self.segmenter.spec,
        )


def main(argv: Sequence[str]) -> int:
    """The runner's CLI with fakes: S4 colours known, an optional `--slow S` seconds per segmenter call."""
    from evals.benchmark.cli import main as cli_main

    args = list(argv)
    delay = 0.0
    if args[:1] == ["--slow"]:
        delay, args = float(args[1]), args[2:]
    models = FakeModels(ColourGrounder(s4_colours()), delay_s=delay)
    return cli_main(args, registry=models.registry, settings=models.settings)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
