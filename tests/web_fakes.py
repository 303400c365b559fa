"""A stand-in for agent.chat_session.ChatSession in web app tests: same API, no models, real files.

Each answer writes what a real turn writes into the run folder (mask PNGs in the AVSBench naming, overlay.mp4, a
result.json and a trace.jsonl) so the app's downloads can be checked without loading a model.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tools.runfiles import write_json_atomic, write_mask_png
from tools.tracing import TraceWriter


@dataclass
class FakeEvent:
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class FakeChat:
    """Answers every message with "a dog is barking"; `gate` (if given) holds each answer until it is set, and
    `started` is set when an answer has begun, so tests can catch a turn in progress."""

    def __init__(self, clip: Path, out: Path, *, gate: threading.Event | None = None, fail: Exception | None = None):
        self.clip = Path(clip)
        self.run_dir = Path(out)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.thread_id = "fake-thread"
        self.gate = gate
        self.fail = fail
        self.started = threading.Event()
        self.closed = False
        self._history: list[dict[str, str]] = []

    def send(self, text: str) -> Iterator[FakeEvent]:
        self.started.set()
        self._history.append({"role": "user", "content": text})
        yield FakeEvent("progress", "segmenting")
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        self._write_outputs()
        yield FakeEvent("tool", "segment", {"path": self.run_dir / "masks"})
        yield FakeEvent("token", "a dog ")
        answer = "a dog is barking"
        self._history.append({"role": "assistant", "content": answer})
        yield FakeEvent("answer", answer, {"phrases": ["dog"]})

    def _write_outputs(self) -> None:
        mask = np.zeros((48, 64), bool)
        mask[10:30, 20:40] = True
        for k in (1, 2):
            write_mask_png(self.run_dir / "masks" / f"{self.clip.stem}_{k}.png", mask)
        shutil.copyfile(self.clip, self.run_dir / "overlay.mp4")
        write_json_atomic(self.run_dir / "result.json", {"clip": {"name": self.clip.name}, "frames": []})
        TraceWriter(self.run_dir / "trace.jsonl").emit("run_start", "agent", profile="fake")

    def history(self) -> list[dict[str, str]]:
        return list(self._history)

    def outputs(self) -> dict[str, Path]:
        names = {"masks": "masks", "overlay": "overlay.mp4", "result": "result.json", "trace": "trace.jsonl"}
        return {key: self.run_dir / name for key, name in names.items() if (self.run_dir / name).exists()}

    def close(self) -> None:
        self.closed = True
