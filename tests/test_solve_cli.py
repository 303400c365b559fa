"""`python -m agent.solve`: bad input is one line and exit 2, odd clips work, the tiny profile writes a full run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import av
import numpy as np
import pytest

from agent import runner, solve
from graphs.context import AgentSettings
from tests.clipfactory import corrupt_copy, write_audio_only, write_test_clip
from tests.fakes import BoxGrounder, BoxSegmenter, ScriptedCaptioner, ScriptedTagger
from tests.test_pipeline import PIPELINE_NODES
from tools.errors import InputError
from tools.models.registry import ModelRegistry
from tools.runfiles import read_json, read_mask_png
from tools.tracing import read_trace

REPO = Path(__file__).resolve().parents[1]


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process; argparse's own exit counts as a return code."""
    try:
        code = solve.main(args)
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_test_clip(tmp_path / "clip.mp4", seconds=3.0, size=(64, 48))


def _bad_inputs(tmp_path: Path, clip: Path) -> dict[str, list[str]]:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).bytes(20000))
    truncated = corrupt_copy(clip, tmp_path / "truncated.mp4", keep_fraction=0.4)
    audio_only = write_audio_only(tmp_path / "voice.m4a")
    out = ["--profile", "tiny", "--out", str(tmp_path / "never")]
    return {
        "missing": [str(tmp_path / "nope.mp4"), *out],
        "directory": [str(tmp_path), *out],
        "empty": [str(empty), *out],
        "text": [str(text), *out],
        "noise": [str(noise), *out],
        "truncated": [str(truncated), *out],
        "audio only": [str(audio_only), *out],
        "no clip": out,
        "bad frames": [str(clip), "--frames", "every:2", *out],
        "bad threshold": [str(clip), "--box-threshold", "1.5", *out],
        "bad max frames": [str(clip), "--max-frames", "0", *out],
        "unknown captioner": [str(clip), "--captioner", "someone/unknown-model", *out],
        "wrong role": [str(clip), "--grounder", "facebook/sam2.1-hiera-tiny", *out],
        "tracker without tracking": [str(clip), "--propagator", "sam2_meta", *out],
        "tracker of another model": [
            str(clip),
            "--segmentation",
            "propagate",
            "--propagator",
            "sam3_tracker_video",
            *out,
        ],
        "unknown option": [str(clip), "--colour", "red"],
        "cache folder is a file": [str(clip), "--cache-dir", str(text), *out],
        "nothing listens": [str(clip), "--captioner", "none", "--tagger", "none", *out],
        "llm url without a scheme": [str(clip), "--llm-base-url", "localhost:8000/v1", *out],
        "out holds other files": [str(clip), "--profile", "tiny", "--out", str(tmp_path)],
        "out cannot be made": [str(clip), "--profile", "tiny", "--out", str(text / "run")],
        "out empty": [str(clip), "--profile", "tiny", "--out", ""],
        "resume nothing": ["--resume", str(tmp_path)],
        **{f"resume {name}": ["--resume", str(folder)] for name, folder in _bad_run_folders(tmp_path).items()},
    }


def _bad_run_folders(tmp_path: Path) -> dict[str, Path]:
    """Run folders that cannot be resumed: run.json damaged, of a conversation, from settings this version does not
    accept, or the checkpoints missing or damaged."""
    source = {"kind": "video", "path": str(tmp_path / "clip.mp4")}
    records = {
        "not json": "{",
        "not an object": "[1]",
        "no settings": json.dumps({"graph": "agent", "source": source}),
        "unknown graph": json.dumps({"graph": "zzz", "settings": {}, "source": source}),
        "a conversation": json.dumps({"graph": "chat", "thread": "t", "settings": {}, "source": source}),
        "stale settings": json.dumps({"graph": "agent", "settings": {"profile": 5}, "source": source}),
        "no checkpoints": json.dumps({"graph": "agent", "settings": {}, "source": source}),
        "damaged checkpoints": json.dumps({"graph": "agent", "settings": {}, "source": source}),
    }
    folders = {}
    for name, text in records.items():
        folder = tmp_path / "runs" / name.replace(" ", "-")
        folder.mkdir(parents=True)
        (folder / "run.json").write_text(text)
        if name != "no checkpoints":
            (folder / "checkpoints.sqlite").write_bytes(b"not a database" if name.startswith("damaged") else b"")
        folders[name] = folder
    return folders


def test_every_bad_input_is_one_line_and_exit_2(tmp_path: Path, clip: Path, capsys) -> None:
    for name, args in _bad_inputs(tmp_path, clip).items():
        start = time.perf_counter()
        code, _, err = _run_cli(args, capsys)
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), f"{name}: {err!r}"
        assert time.perf_counter() - start < 10, name
    assert not (tmp_path / "never").exists(), "a rejected input must not leave a run folder"
    assert not (tmp_path / "run.json").exists() and not (REPO / "run.json").exists()


def test_uncached_real_model_fails_fast_with_how_to_fix(clip: Path, tmp_path: Path, capsys) -> None:
    start = time.perf_counter()
    code, _, err = _run_cli([str(clip), "--profile", "default", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and time.perf_counter() - start < 10
    line = err.strip().splitlines()[-1]
    assert "Qwen/Qwen2-Audio-7B-Instruct" in line and "HF_HUB_OFFLINE" in line and "--captioner" in line
    # Nothing written: the same command, once the weights are there, must not find a run folder claiming a run.
    assert not (tmp_path / "run").exists()
    code, _, again = _run_cli([str(clip), "--profile", "default", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and again == err


def test_paper_profile_without_llm_says_how_to_configure_one(clip: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _run_cli([str(clip), "--profile", "paper", "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and "OPENAI_API_KEY" in err and len(err.strip().splitlines()) == 1


def test_existing_run_folder_is_not_overwritten(clip: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    code, _, err = _run_cli([str(clip), "--profile", "tiny", "--out", str(run)], capsys)
    assert code == 2 and "--resume" in err


def test_default_run_folder_never_reuses_a_taken_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):  # the same second for every run
            return cls(2026, 11, 26, 18, 15, 0)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runner, "datetime", FrozenClock)
    first = runner.new_run_dir(None, "clip")
    assert first == Path("runs/clip-20261126-181500")
    first.mkdir(parents=True)
    (first / "run.json").write_text("{}")
    second = runner.new_run_dir(None, "clip")
    assert second == Path("runs/clip-20261126-181500-2")
    second.mkdir()  # even an empty folder is taken: another process may be about to write its run there
    assert runner.new_run_dir(None, "clip") == Path("runs/clip-20261126-181500-3")
    Path("runs").rename("elsewhere")
    Path("runs").write_text("a file")
    with pytest.raises(InputError, match="default run folder"):
        runner.new_run_dir(None, "clip")


ODD_CLIPS = {
    "one frame": {"seconds": 0.04, "fps": 25.0, "size": (64, 48)},
    "short": {"seconds": 0.6, "fps": 25.0, "size": (64, 48)},
    "odd size": {"seconds": 2.0, "fps": 25.0, "size": (63, 47)},
    "rotated": {"seconds": 2.0, "fps": 25.0, "size": (64, 48), "rotation_deg": 90},
    "irregular": {"seconds": 3.0, "fps": 20.0, "size": (64, 48), "irregular": True},
}


@pytest.mark.parametrize("name", list(ODD_CLIPS))
def test_odd_clips_give_one_mask_per_frame_at_display_size(name: str, tmp_path: Path, monkeypatch) -> None:
    spec = ODD_CLIPS[name]
    path = write_test_clip(tmp_path / "odd.mp4", **spec)
    registry = ModelRegistry("cpu")
    fakes = [
        ScriptedCaptioner(["a dog is barking"]),
        ScriptedTagger([]),
        BoxGrounder({"dog": ((0.2, 0.2, 0.6, 0.8), 0.9)}),
    ]
    fakes.append(BoxSegmenter())
    for fake in fakes:
        registry.install(fake.spec, fake)
    settings = AgentSettings(
        profile="fakes", captioner=fakes[0].spec, tagger=fakes[1].spec, grounder=fakes[2].spec, segmenter=fakes[3].spec
    )
    monkeypatch.setattr("agent.runner.ModelRegistry", lambda device=None: registry)
    monkeypatch.setattr("agent.cli_settings.agent_profile", lambda profile: settings)
    run = tmp_path / "run"
    assert solve.main([str(path), "--out", str(run), "--no-cache"]) == 0
    width, height = spec["size"]
    if spec.get("rotation_deg") in (90, 270):
        width, height = height, width
    result = read_json(run / "result.json")
    n_frames = len(result["frames"])
    assert n_frames == {"one frame": 1, "short": 1, "odd size": 2, "rotated": 2, "irregular": 3}[name]
    masks = sorted((run / "masks").iterdir())
    assert [m.name for m in masks] == [f"odd_{k}.png" for k in range(1, n_frames + 1)]
    for mask_file in masks:
        mask = read_mask_png(mask_file)
        assert mask.shape == (height, width)
        assert mask.any()
    with av.open(str(run / "overlay.mp4")) as container:
        assert container.streams.video[0].width >= width - 1


def test_tiny_profile_agent_writes_a_complete_run_folder(clip: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, out, err = _run_cli([str(clip), "--profile", "tiny", "--out", str(run), "--max-rounds", "2"], capsys)
    assert code == 0, err
    assert "meaningless" in err and f"run folder: {run}" in out
    result = read_json(run / "result.json")
    assert result["meaningful"] is False and len(result["frames"]) == 3
    assert {m["face"] for m in result["models"]} == {"tiny"}
    assert {m["role"] for m in result["models"]} == {"captioner", "tagger", "grounder", "segmenter", "critic"}
    agent = result["agent"]
    assert agent["planner"] == "builtin" and 1 <= len(agent["rounds"]) <= 2
    # Random weights answer the VLM critic with garbage: the verdict falls back to the checks and says so.
    assert all(r["verdict"]["source"] in {"checks_fallback", "vlm"} for r in agent["rounds"])
    for k in range(1, 4):
        assert read_mask_png(run / "masks" / f"clip_{k}.png").shape == (48, 64)
    with av.open(str(run / "overlay.mp4")) as container:
        assert len(container.streams.video) == 1 and len(container.streams.audio) == 1
    records = read_trace(run / "trace.jsonl")
    kinds = {r["kind"] for r in records}
    assert {"run_start", "model_load", "llm_call", "tool_call", "critique", "decision", "run_end"} <= kinds
    assert {r["name"] for r in records if r["kind"] == "tool_call"} >= {"describe_audio", "ground", "segment"}
    # Resuming a finished run changes nothing and succeeds.
    before = (run / "result.json").read_bytes()
    code, _, _ = _run_cli(["--resume", str(run)], capsys)
    assert code == 0 and (run / "result.json").read_bytes() == before


def test_tiny_profile_pipeline_writes_a_complete_run_folder(clip: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    code, _, err = _run_cli(
        [str(clip), "--profile", "tiny", "--graph", "pipeline", "--out", str(run), "--no-cache", "--compile"], capsys
    )
    assert code == 0, err
    result = read_json(run / "result.json")
    # --compile reaches the captioner only: the roles without a compiled path keep their plain specs.
    assert {m["role"]: m["compile"] for m in result["models"]} == {
        "captioner": True,
        "tagger": False,
        "grounder": False,
        "segmenter": False,
    }
    assert set(result["timings_s"]) == set(PIPELINE_NODES)
    assert result["tokens"]["input"] > 0 and result["tokens"]["output"] > 0 and "agent" not in result
    assert sorted(p.name for p in (run / "masks").iterdir()) == [f"clip_{k}.png" for k in range(1, 4)]
    kinds = {r["kind"] for r in read_trace(run / "trace.jsonl")}
    assert {"run_start", "model_load", "node", "model_call", "run_end"} <= kinds


def test_module_entry_point_runs_as_users_run_it(clip: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "agent.solve", str(clip), "--profile", "tiny", "--out", str(run), "--no-overlay"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "[plan]" in done.stderr and "Traceback" not in done.stderr
    result = json.loads((run / "result.json").read_text())
    assert result["outputs"].keys() >= {"masks", "result", "trace"} and "overlay" not in result["outputs"]
