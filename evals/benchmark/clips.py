"""One clip of the benchmark: its pipeline input, its run folder, how far it got, and running it.

Run folder: OUT/clips/<the clip's prediction-tree folder> (s4: <category>/<name>, ms3: <name>, avss/v3:
<label>/<uid>), holding what agent.runner.run_graph writes (run.json first, result.json last) and, for a failed
attempt, error.json. States, decided from the files alone so that a SIGKILL at any moment is safe:
    done          result.json is there and lists every frame          -> skipped on a rerun
    interrupted   run.json but no result.json (the process died)      -> restarted from scratch
    failed        error.json (the pipeline raised)                    -> restarted from scratch
    new           nothing (or debris without run.json)                -> started
An interrupted clip is restarted rather than resumed from its LangGraph checkpoint: the state of the files alone
decides, whatever the checkpoint database holds (run_graph writes checkpoints durably, but a restart needs no
trust in a database a SIGKILL interrupted). A restart redoes at most one clip per worker, and its ALM captions
and LLM answers come back from the disk cache.
Restarting moves the old folder aside with one atomic rename before deleting it, so no half-deleted folder is
ever mistaken for a run.
"""

from __future__ import annotations

import shutil
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from agent.runner import run_graph
from evals.datasets import EvalClip
from evals.datasets.categories import readable_classes
from evals.scoring import prediction_paths
from graphs.context import PipelineSettings
from graphs.pipeline import FramesSource
from tools.cache import DiskCache
from tools.models.registry import ModelRegistry
from tools.runfiles import read_json, write_json_atomic
from tools.translate import Translator
from tools.vocabulary import GROUNDABLE_PHRASE

FRAME_OFFSET_S = 15 / 16
"""Where in its second an AVSBench frame was taken: the official preprocessing samples frame
int(s*fi + 15/16*fi) of second s (PAPER.md §3), i.e. near the end of the second."""

ClipState = Literal["done", "interrupted", "failed", "new"]


def frame_timestamps(n_frames: int) -> list[float]:
    """(n_frames,) seconds: frame k (0-based) of an AVSBench folder was taken at k + 15/16 s."""
    return [k + FRAME_OFFSET_S for k in range(n_frames)]


def frames_source(clip: EvalClip) -> FramesSource:
    """The pipeline input for a clip: its extracted frames with their times, and its wav."""
    return FramesSource(
        kind="frames",
        name=clip.name,
        frame_paths=[str(p) for p in clip.frame_paths],
        timestamps_s=frame_timestamps(clip.frame_count),
        audio_path=str(clip.audio_path),
    )


def oracle_phrases(clip: EvalClip) -> tuple[str, ...]:
    """The clip's class names as detector prompts (the paper's OpenAVS*).

    S4: the category's noun (evals.datasets.categories). Elsewhere each a_obj token that is an AVSS class is
    spelled as tools.vocabulary.GROUNDABLE_PHRASE spells it (the same words the audio path's translator emits, so
    both settings ask the detector in one vocabulary: "emergency-car" -> "ambulance", "sorna" -> "suona horn");
    other tokens read "-" as a space; non-objects ("background", "off-the-screen") are dropped.
    """
    if clip.subset == "s4":
        return clip.class_names
    return readable_classes(tuple(GROUNDABLE_PHRASE.get(token, token) for token in clip.raw_classes))


def clip_key(clip: EvalClip) -> Path:
    """The clip's folder relative to a prediction tree (unique within a subset)."""
    return prediction_paths(clip, Path())[0].parent


def clip_run_dir(clips_dir: Path, clip: EvalClip) -> Path:
    """The clip's run folder under OUT/clips."""
    return clips_dir / clip_key(clip)


def read_result(run_dir: Path, clip: EvalClip) -> dict | None:
    """The clip's result.json when it is complete (parses and lists every frame), else None."""
    try:
        result = read_json(run_dir / "result.json")
    except (OSError, ValueError):
        return None
    frames = result.get("frames") if isinstance(result, dict) else None
    return result if isinstance(frames, list) and len(frames) == clip.frame_count else None


def clip_state(run_dir: Path, clip: EvalClip) -> ClipState:
    """How far an earlier attempt got (see the module docstring)."""
    if read_result(run_dir, clip) is not None:
        return "done"
    if (run_dir / "error.json").is_file():
        return "failed"
    if (run_dir / "run.json").is_file():
        return "interrupted"
    return "new"


def discard(run_dir: Path) -> None:
    """Remove a run folder: one atomic rename out of the way, then delete."""
    if not run_dir.exists():
        return
    trash = run_dir.with_name(f".{run_dir.name}.discard")
    shutil.rmtree(trash, ignore_errors=True)
    run_dir.replace(trash)
    shutil.rmtree(trash, ignore_errors=True)


@dataclass(frozen=True)
class ClipOutcome:
    """What happened to one clip in this invocation; `seconds` is wall time (0 for a skipped clip)."""

    clip: EvalClip
    status: Literal["done", "restarted", "skipped", "failed"]
    seconds: float = 0.0
    error: str | None = None


def _quiet(stage: str, message: str) -> None:
    """Per-stage messages would break the progress line; the trace keeps them."""


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


@dataclass
class ClipRunner:
    """Runs clips through a graph (pipeline or agent) into `clips_dir`, sharing one registry, translator and
    cache."""

    clips_dir: Path
    settings: PipelineSettings
    oracle: bool
    registry: ModelRegistry
    translator: Translator | None = None
    cache: DiskCache | None = None
    graph: Literal["pipeline", "agent"] = "pipeline"

    def run_dir(self, clip: EvalClip) -> Path:
        return clip_run_dir(self.clips_dir, clip)

    def clip_settings(self, clip: EvalClip) -> PipelineSettings:
        """The shared settings, with the clip's class names as the prompts in oracle mode."""
        if not self.oracle:
            return self.settings
        return self.settings.model_copy(update={"oracle_phrases": oracle_phrases(clip)})

    def __call__(self, clip: EvalClip) -> ClipOutcome:
        """Run (or rerun) one clip unless it is done; a pipeline exception is recorded in error.json, never raised."""
        run_dir = self.run_dir(clip)
        state = clip_state(run_dir, clip)
        if state == "done":
            return ClipOutcome(clip, "skipped")
        discard(run_dir)
        run_dir.mkdir(parents=True)
        start = time.perf_counter()
        try:
            run_graph(
                run_dir,
                self.clip_settings(clip),
                frames_source(clip),
                graph=self.graph,
                registry=self.registry,
                translator=self.translator,
                cache=self.cache,
                progress=_quiet,
            )
        except Exception as err:  # one clip's failure is data for the report, not the end of the run
            message = _one_line(err)
            write_json_atomic(
                run_dir / "error.json",
                {
                    "clip": str(clip_key(clip)),
                    "error": message,
                    "traceback": traceback.format_exc(),
                    "time": datetime.now(UTC).isoformat(timespec="seconds"),
                },
            )
            return ClipOutcome(clip, "failed", time.perf_counter() - start, message)
        return ClipOutcome(clip, "restarted" if state == "interrupted" else "done", time.perf_counter() - start)
