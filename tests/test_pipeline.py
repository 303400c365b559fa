"""The pipeline graph end to end with scripted models: the right masks land in the right files, and runs resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import av
import numpy as np
import pytest
from langgraph.checkpoint.sqlite import SqliteSaver

from agent.cli_names import GRAPH_NAMES
from agent.run_record import CHECKPOINTS, checkpoint_connection, resumable_record
from agent.runner import THREAD_ID, resumed_run, run_graph
from graphs.context import PipelineSettings
from graphs.pipeline import VideoSource, build_pipeline
from tests.clipfactory import write_test_clip
from tests.fakes import (
    BoxGrounder,
    BoxSegmenter,
    FrameWatchingCaptioner,
    ScriptedCaptioner,
    ScriptedTagger,
    box_mask,
)
from tools.errors import InputError
from tools.models.registry import ModelRegistry
from tools.runfiles import read_json, read_mask_png
from tools.tracing import read_trace
from tools.translate import LexiconTranslator

REPO = Path(__file__).resolve().parents[1]
PIPELINE_NODES = ["load", "describe_audio", "decode_frames", "translate", "ground", "segment", "emit"]
"""The pipeline's nodes in the order they run; each reports its time in result.json."""
DOG_BOX = (0.1, 0.2, 0.5, 0.6)
MAN_BOX = (0.55, 0.1, 0.95, 0.9)


def _quiet(stage: str, message: str) -> None:
    pass


class Models:
    """One set of fakes wired into a registry, plus the settings naming them."""

    def __init__(self, captions: list[str], segmenter: BoxSegmenter | None = None) -> None:
        self.captioner = ScriptedCaptioner(captions)
        self.tagger = ScriptedTagger([("dog", 0.1)])
        self.grounder = BoxGrounder({"dog": (DOG_BOX, 0.8), "man": (MAN_BOX, 0.6)})
        self.segmenter = segmenter or BoxSegmenter()
        self.registry = ModelRegistry("cpu")
        for fake in (self.captioner, self.tagger, self.grounder, self.segmenter):
            self.registry.install(fake.spec, fake)
        self.settings = PipelineSettings(
            profile="test",
            captioner=self.captioner.spec,
            tagger=self.tagger.spec,
            grounder=self.grounder.spec,
            segmenter=self.segmenter.spec,
        )

    def run(self, run_dir: Path, clip: Path, resume: bool = False) -> dict:
        source = VideoSource(kind="video", path=str(clip))
        return run_graph(
            run_dir,
            self.settings,
            source,
            registry=self.registry,
            translator=LexiconTranslator(min_tag_score=0.3),
            progress=_quiet,
            resume=resume,
        )


CAPTIONS = [
    "a dog is barking",
    "a dog barks loudly",
    "a man is speaking",
    "a man is speaking while a dog barks",
    "wind noise",
]


def test_right_masks_land_in_right_files(tmp_path: Path) -> None:
    clip = write_test_clip(tmp_path / "park.mp4", seconds=5.0, fps=25.0, size=(80, 60))
    models = Models(CAPTIONS)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    state = models.run(run_dir, clip)

    assert state["phrases"] == [["dog"], ["dog"], ["man"], ["man", "dog"], []]
    expected = [
        box_mask(60, 80, DOG_BOX),
        box_mask(60, 80, DOG_BOX),
        box_mask(60, 80, MAN_BOX),
        box_mask(60, 80, MAN_BOX) | box_mask(60, 80, DOG_BOX),
        np.zeros((60, 80), bool),
    ]
    for k, want in enumerate(expected, start=1):
        got = read_mask_png(run_dir / "masks" / f"park_{k}.png")
        assert got.shape == (60, 80)
        np.testing.assert_array_equal(got, want, err_msg=f"frame {k}")
    assert sorted(p.name for p in (run_dir / "masks").iterdir()) == [f"park_{k}.png" for k in range(1, 6)]

    # The captioner heard one window per frame: the second that ends at the frame (16 kHz).
    assert models.captioner.calls == [(5, 16000, list(models.settings.queries))]
    # Frames with no phrase are not sent to the grounder.
    assert sum(len(batch) for _, batch in models.grounder.calls) == 4

    result = read_json(run_dir / "result.json")
    assert [f["mask_file"] for f in result["frames"]] == [f"masks/park_{k}.png" for k in range(1, 6)]
    assert [f["phrases"] for f in result["frames"]] == state["phrases"]
    assert result["frames"][3]["objects"][0]["phrase"] == "man"
    assert result["frames"][3]["union_area"] == int(expected[3].sum())
    timestamps = [f["timestamp_s"] for f in result["frames"]]
    assert timestamps == pytest.approx([23 / 25, 48 / 25, 73 / 25, 98 / 25, 123 / 25], abs=1e-3)
    # The AVSBench rule samples frame starts: the frame on screen then starts at that very time.
    assert [f["pts_s"] for f in result["frames"]] == pytest.approx(timestamps, abs=1e-3)
    assert set(result["timings_s"]) == set(PIPELINE_NODES)
    assert result["clip"]["width"] == 80 and result["audio"]["audible"] is True
    assert any("built-in" in w for w in result["warnings"])

    kinds = [(r["kind"], r["name"]) for r in read_trace(run_dir / "trace.jsonl")]
    assert kinds[0] == ("run_start", "pipeline") and kinds[-1] == ("run_end", "pipeline")
    nodes = [name for kind, name in kinds if kind == "node"]
    assert nodes == PIPELINE_NODES

    with av.open(str(run_dir / "overlay.mp4")) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1


def test_silent_clip_gives_empty_masks_and_a_warning(tmp_path: Path) -> None:
    clip = write_test_clip(tmp_path / "quiet.mp4", seconds=3.0, size=(64, 48), silent=True)
    models = Models(CAPTIONS)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    state = models.run(run_dir, clip)
    assert state["phrases"] == [[], [], []]
    assert models.captioner.calls == []
    assert any("silent" in w for w in state["warnings"])
    for k in range(1, 4):
        assert not read_mask_png(run_dir / "masks" / f"quiet_{k}.png").any()


def test_clip_without_audio_stream_is_valid(tmp_path: Path) -> None:
    clip = write_test_clip(tmp_path / "mute.mp4", seconds=2.0, size=(64, 48), audio=False)
    models = Models(CAPTIONS)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    state = models.run(run_dir, clip)
    assert state["phrases"] == [[], []]
    assert any("no audio stream" in w for w in state["warnings"])
    with av.open(str(run_dir / "overlay.mp4")) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 0


class CrashingSegmenter(BoxSegmenter):
    """Fails on its first call, like a process killed in the middle of segmentation."""

    def __init__(self) -> None:
        super().__init__()
        self.crashed = False

    def segment(self, image, boxes):
        if not self.crashed:
            self.crashed = True
            raise RuntimeError("simulated crash")
        return super().segment(image, boxes)


def test_interrupted_run_resumes_without_redoing_finished_stages(tmp_path: Path) -> None:
    clip = write_test_clip(tmp_path / "park.mp4", seconds=3.0, size=(64, 48))
    models = Models(CAPTIONS, segmenter=CrashingSegmenter())
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(RuntimeError, match="simulated crash"):
        models.run(run_dir, clip)
    assert not (run_dir / "result.json").exists()
    assert not (run_dir / "masks").exists()

    graph, settings, source = resumed_run(resumable_record(run_dir, GRAPH_NAMES), run_dir)
    assert graph == "pipeline" and settings == models.settings and source["path"] == str(clip)
    state = models.run(run_dir, clip, resume=True)
    assert len(models.captioner.calls) == 1  # describe_audio ran once, before the crash
    assert len(models.grounder.calls) == 1
    assert state["phrases"] == [["dog"], ["dog"], ["man"]]
    assert (run_dir / "result.json").exists()
    nodes = [r["name"] for r in read_trace(run_dir / "trace.jsonl") if r["kind"] == "node" and "error" not in r]
    assert nodes.count("describe_audio") == 1 and nodes.count("segment") == 1


@pytest.mark.parametrize("decode_ahead", [True, False])
def test_frames_decode_while_the_audio_is_described(tmp_path: Path, decode_ahead: bool) -> None:
    """The captioner is still describing when the frames are on disk: load started decoding them in the background
    (decode_ahead; without it they decode after). It runs on the thread that runs the graph (torch keeps CUDA graphs
    per thread)."""
    clip = write_test_clip(tmp_path / "park.mp4", seconds=3.0, size=(64, 48))
    run_dir = tmp_path / "run"
    models = Models(CAPTIONS)
    models.settings = models.settings.model_copy(update={"decode_ahead": decode_ahead})
    frames_dir = run_dir / "work" / "frames"
    watcher = FrameWatchingCaptioner(CAPTIONS, frames_dir, n_frames=3, wait_s=30.0 if decode_ahead else 0.5)
    models.registry.install(models.captioner.spec, watcher)
    state = models.run(run_dir, clip)
    assert watcher.saw_frames is decode_ahead and watcher.thread is threading.current_thread()
    assert [f["path"] for f in state["frames"]] == [str(run_dir / "work" / "frames" / f"{k:05d}.png") for k in range(3)]
    assert state["phrases"] == [["dog"], ["dog"], ["man"]]


def test_a_failed_background_decode_fails_its_node_and_the_resumed_run_decodes_there(
    tmp_path: Path, first_frame_decode_fails: list[str]
) -> None:
    """An error while the frames decode in the background is raised by decode_frames, after describe_audio's work
    was saved; the resumed run, which has no decode under way, decodes the frames in that node."""
    clip = write_test_clip(tmp_path / "park.mp4", seconds=3.0, size=(64, 48))
    models = Models(CAPTIONS)
    run_dir = tmp_path / "run"
    calls = first_frame_decode_fails
    with pytest.raises(InputError, match="simulated unreadable frame"):
        models.run(run_dir, clip)
    failed = [r for r in read_trace(run_dir / "trace.jsonl") if r["kind"] == "node" and "error" in r]
    assert [r["name"] for r in failed] == ["decode_frames"]

    state = models.run(run_dir, clip, resume=True)
    assert len(models.captioner.calls) == 1  # describe_audio's captions were kept
    assert calls[0].startswith("openavs-prefetch") and calls[1] == threading.current_thread().name
    assert state["phrases"] == [["dog"], ["dog"], ["man"]] and (run_dir / "result.json").is_file()


class StallingSegmenter(BoxSegmenter):
    """Touches `marker` when first asked, then never answers: the process is killed while it waits."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.marker = marker

    def segment(self, image, boxes):
        self.marker.touch()
        time.sleep(600)
        raise AssertionError("the process should have been killed")


def run_until_killed(run_dir: str, clip: str, marker: str) -> None:
    """The child process of the kill test: a run whose segmentation never ends."""
    Models(CAPTIONS, segmenter=StallingSegmenter(Path(marker))).run(Path(run_dir), Path(clip))


def test_a_killed_run_resumes_from_its_saved_checkpoints(tmp_path: Path) -> None:
    """SIGKILL during segmentation (no exception handler runs, nothing is flushed): the resumed run keeps the
    checkpoints written before (captions, boxes) and only segments and emits. The checkpoint database commits
    without waiting for the disk (SQLite WAL, synchronous=NORMAL), which loses nothing when a process dies."""
    clip = write_test_clip(tmp_path / "park.mp4", seconds=3.0, size=(64, 48))
    run_dir, marker = tmp_path / "run", tmp_path / "segmenting"
    args = ", ".join(repr(str(p)) for p in (run_dir, clip, marker))
    code = f"from tests.test_pipeline import run_until_killed; run_until_killed({args})"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():  # segmenting: ground's checkpoint was committed before its next node began
            assert child.poll() is None and time.monotonic() < deadline, "the run never reached segmentation"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    models = Models(CAPTIONS)
    state = models.run(run_dir, clip, resume=True)
    assert models.captioner.calls == [] and models.grounder.calls == []  # describe_audio and ground were saved
    assert state["phrases"] == [["dog"], ["dog"], ["man"]] and (run_dir / "result.json").is_file()


class FailingCaptioner(ScriptedCaptioner):
    def describe(self, windows, queries, max_new_tokens=48):
        raise InputError("simulated captioner failure")


def test_a_run_saved_before_timestamps_s_resumes_at_its_frames_times(tmp_path: Path) -> None:
    """Versions before decoding ahead saved load's frame handles and no timestamps_s. A run they stopped after load
    resumes: describe_audio hears, and decode_frames decodes, at the handles' times."""
    clip = write_test_clip(tmp_path / "park.mp4", seconds=3.0, size=(64, 48))
    models, run_dir = Models(CAPTIONS), tmp_path / "run"
    finished = models.run(tmp_path / "finished", clip)
    failing = FailingCaptioner(CAPTIONS)
    models.registry.install(models.captioner.spec, failing)
    with pytest.raises(InputError, match="simulated captioner failure"):
        models.run(run_dir, clip)
    config = {"configurable": {"thread_id": THREAD_ID}}
    with closing(checkpoint_connection(run_dir / CHECKPOINTS)) as conn:
        graph = build_pipeline().compile(checkpointer=SqliteSaver(conn))
        saved = graph.get_state(config).values
        conn.execute("DELETE FROM writes")
        conn.execute("DELETE FROM checkpoints")
        conn.commit()
        old = {k: saved[k] for k in ("source", "clip", "audio", "warnings")}
        graph.update_state(config, {**old, "frames": finished["frames"]}, as_node="load")
        assert "timestamps_s" not in graph.get_state(config).values
        assert graph.get_state(config).next == ("describe_audio",)
    models.registry.install(models.captioner.spec, models.captioner)
    state = models.run(run_dir, clip, resume=True)
    assert [f["timestamp_s"] for f in state["frames"]] == [f["timestamp_s"] for f in finished["frames"]]
    assert all(Path(f["path"]).parent == run_dir / "work" / "frames" for f in state["frames"])
    assert state["phrases"] == finished["phrases"] and (run_dir / "result.json").is_file()
