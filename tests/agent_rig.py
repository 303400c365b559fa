"""A test rig for the agent graph: scripted fakes in a registry, a clip, and a run folder (a helper module)."""

from __future__ import annotations

from pathlib import Path

from agent.runner import run_graph
from graphs.context import AgentSettings
from graphs.pipeline import VideoSource
from graphs.planners import ChatPlanner
from tests.clipfactory import write_test_clip
from tests.fakes import BoxGrounder, BoxSegmenter, ScriptedCaptioner, ScriptedTagger
from tools.critic import Critic
from tools.models.registry import ModelRegistry
from tools.tracing import read_trace
from tools.translate import LexiconTranslator

MAN_BOX = (0.05, 0.1, 0.45, 0.9)
PIANO_BOX = (0.55, 0.4, 0.95, 0.9)
CAPTIONS = ["a man speaks while a piano plays"]


def _quiet(stage: str, message: str) -> None:
    pass


class Rig:
    """Fakes wired into a registry: the grounder finds the piano only below the paper's 0.25 box threshold."""

    def __init__(self, tmp_path: Path, captions: list[str] = CAPTIONS, segmenter: BoxSegmenter | None = None) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.clip = write_test_clip(tmp_path / "duet.mp4", seconds=3.0, size=(80, 60))
        self.captioner = ScriptedCaptioner(captions)
        self.tagger = ScriptedTagger([])
        self.grounder = BoxGrounder({"man": (MAN_BOX, 0.6), "piano": (PIANO_BOX, 0.22)})
        self.segmenter = segmenter or BoxSegmenter()
        self.registry = ModelRegistry("cpu")
        for fake in (self.captioner, self.tagger, self.grounder, self.segmenter):
            self.registry.install(fake.spec, fake)
        self.settings = AgentSettings(
            profile="test",
            captioner=self.captioner.spec,
            tagger=self.tagger.spec,
            grounder=self.grounder.spec,
            segmenter=self.segmenter.spec,
        )
        self.run_dir = tmp_path / "run"
        self.run_dir.mkdir()

    def run(self, llm_planner: ChatPlanner | None = None, resume: bool = False, **settings) -> dict:
        return run_graph(
            self.run_dir,
            self.settings.model_copy(update=settings),
            VideoSource(kind="video", path=str(self.clip)),
            graph="agent",
            registry=self.registry,
            translator=LexiconTranslator(),
            planner=llm_planner,
            critic=Critic(vlm=None),
            progress=_quiet,
            resume=resume,
        )

    def trace(self) -> list[dict]:
        return read_trace(self.run_dir / "trace.jsonl")

    def tool_sequence(self) -> list[str]:
        return [r["name"] for r in self.trace() if r["kind"] == "tool_call"]
