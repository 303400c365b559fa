"""agent.solve, agent.chat, agent.web, evals/run_avsbench.py and the benches (evals.bench, evals.bench_*) answer
`--help` and a bad clip, run folder, option or dataset before loading any model library.

torch, transformers and LangGraph take seconds to import (about 5 s per process on 2 cores, twice that where Python
may not write bytecode); a mistyped path or `--help` must not wait for them. Each case runs in a fresh interpreter,
since this test process has imported them long ago.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clipfactory import write_test_clip

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "langgraph", "langchain_core")

PROBE = """
import importlib, json, sys
heavy, module, args = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3:]
try:
    code = importlib.import_module(module).main(args)
except SystemExit as exit_:
    code = exit_.code
print(json.dumps({"code": code, "loaded": [m for m in heavy if m in sys.modules]}))
"""


def _run(module: str, args: list[str]) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _bad_input(case: str, tmp_path: Path) -> list[str]:
    """Arguments of `case`: a clip that is not there or not a video, a folder that holds no run, an AVSBench root of
    neither kind, or an option value out of range."""
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video")
    return {
        "missing clip": [str(tmp_path / "nope.mp4")],
        "not a video": [str(notes)],
        "not a run folder": ["--resume", str(tmp_path)],
        "bad port": ["--port", "0"],
        "missing root": ["--root", str(tmp_path / "nope"), "--subset", "s4"],
        "root without metadata": ["--root", str(tmp_path), "--subset", "ms3"],
        "odd clip size": ["--clip-size", "13x7"],
        "no frames": ["--frames", "0"],
        "no repeats": ["--repeats", "0"],
        "unknown frame strategy": [str(notes), "--frames", "every:2"],
    }[case]


@pytest.mark.parametrize(
    ("module", "case"),
    [
        *(
            (module, case)
            for module in ("agent.solve", "agent.chat", "evals.bench_e2e", "evals.bench_decode")
            for case in ("missing clip", "not a video")
        ),
        ("agent.solve", "not a run folder"),
        ("agent.web", "bad port"),
        ("evals.benchmark.cli", "missing root"),
        ("evals.benchmark.cli", "root without metadata"),
        ("evals.bench", "odd clip size"),
        ("evals.bench_sam3", "no frames"),
        ("evals.bench_trackers", "no repeats"),
        ("evals.bench_e2e", "no repeats"),
        ("evals.bench_decode", "unknown frame strategy"),
    ],
)
def test_bad_input_is_one_line_before_the_model_libraries_load(module: str, case: str, tmp_path: Path) -> None:
    answer, err = _run(module, _bad_input(case, tmp_path))
    assert answer == {"code": 2, "loaded": []}
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


@pytest.mark.parametrize(
    "module",
    [
        *("agent.solve", "agent.chat", "agent.web", "evals.benchmark.cli"),
        *("evals.bench", "evals.bench_sam3", "evals.bench_trackers", "evals.bench_e2e", "evals.bench_decode"),
    ],
)
def test_help_answers_before_the_model_libraries_load(module: str) -> None:
    answer, _ = _run(module, ["--help"])
    assert answer == {"code": 0, "loaded": []}


def test_a_readable_clip_goes_on_to_load_them(tmp_path: Path) -> None:
    """The other side of the split: past the clip check, the next error (an unknown model folder) comes from the
    settings, which load the libraries; so the check above is not passing for want of ever importing them."""
    clip = write_test_clip(tmp_path / "clip.mp4", seconds=1.0, size=(32, 24))
    answer, err = _run("agent.solve", [str(clip), "--grounder", str(tmp_path / "no-such-model"), "--no-cache"])
    assert answer["code"] == 2 and err.startswith("error: ")
    assert answer["loaded"] == list(HEAVY)
