"""`python -m agent.trace`: one self-contained, escaped page per run folder, for finished and failed runs alike."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agent import trace
from tests.clipfactory import write_test_clip
from tools.rle import encode_rle
from tools.runfiles import write_mask_png

SECTION_IDS = ("summary", "timeline", "planner", "tools", "critiques", "masks", "costs")
SCRIPT = "<script>alert(1)</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(1)&lt;/script&gt;"
SIZE = (64, 48)  # (W, H) of the synthetic frames
# src= or href= that reaches off the page: http(s) or protocol-relative.
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _record(kind: str, name: str, ts: float, ms: float = 0.0, **fields: Any) -> dict[str, Any]:
    return {"ts": ts, "kind": kind, "name": name, "ms": ms, **fields}


def _records(t0: float) -> list[dict[str, Any]]:
    """One record of every kind the trace contract lists, as an agent run with a planner would write them."""
    planner_messages = [
        {"role": "system", "content": "You plan the segmentation. Tools: segment_frames, critique_masks."},
        {"role": "user", "content": [{"type": "text", "text": f"captions: {SCRIPT}"}, {"type": "image_url"}]},
    ]
    return [
        _record("run_start", "agent", t0, source={"kind": "video", "path": "/clips/c.mp4"}, profile="tiny",
                device="cpu", meaningful=False, resume=False),
        _record("model_load", "grounder", t0 + 0.5, 500.0, model="tiny-grounding_dino", face="tiny", device="cpu"),
        _record("node", "load", t0 + 0.6, 100.0, seconds=0.1, n_frames=2),
        _record("model_call", "captioner", t0 + 0.8, 200.0, model="tiny-qwen2_audio", captions=[[SCRIPT]], tokens=12),
        _record("cache_hit", "translator", t0 + 0.8, key="abc"),
        _record("llm_call", "planner", t0 + 1.5, 700.0, round=1, model="gpt-test", messages=planner_messages,
                response="I will segment the drum.", tool_calls=[{"name": "segment_frames",
                "args": {"phrases": ["drum"], "frames": [0, 1]}}], input_tokens=321, output_tokens=45, attempt=1,
                error=None),
        _record("tool_call", "segment_frames", t0 + 2.5, 1000.0, round=1,
                arguments={"phrases": ["drum"], "note": SCRIPT}, result={"objects": 2, "union_area": [120, 96]},
                images=["work/frames/00000.png", "overlays/r1_0.png", "../outside.png",
                        "https://evil.example/x.png"]),
        _record("critique", "critic", t0 + 3.0, 500.0, round=1,
                verdict={"ok": False, "score": 0.42, "problems": ["mask covers the floor"],
                         "suggestion": "ask for 'snare drum'", "source": "llm"},
                findings=[{"check": "area", "ok": False, "detail": "mask > 60% of frame"}],
                images=["overlays/r1_0.png"]),
        _record("decision", "planner", t0 + 3.1, round=1, action="refine", reason="score 0.42 below 0.6"),
        _record("llm_call", "planner", t0 + 3.6, 500.0, round=2, model="gpt-test", messages=planner_messages,
                response="done", tool_calls=[{"name": "finish", "args": {}}], input_tokens=400, output_tokens=5,
                attempt=1),
        _record("warning", "grounder", t0 + 3.7, message="few boxes above threshold"),
        _record("error", "critic", t0 + 3.8, message="critic timed out once"),
        _record("run_end", "agent", t0 + 4.0, 3500.0, status="ok", best_round=1, flagged=False),
    ]  # fmt: skip


def _masks() -> list[np.ndarray]:
    width, height = SIZE
    first = np.zeros((height, width), bool)
    first[10:30, 5:25] = True
    second = np.zeros((height, width), bool)
    second[20:40, 30:60] = True
    return [first, second]


def _result(run: Path) -> dict[str, Any]:
    width, height = SIZE
    objects = [
        {"phrase": phrase, "box": [5.0, 10.0, 25.0, 30.0], "box_score": 0.91, "mask_score": 0.8,
         "area": int(mask.sum()), "rle": encode_rle(mask)}
        for phrase, mask in zip(["drum", "snare drum"], _masks(), strict=True)
    ]  # fmt: skip
    frames = []
    for k in range(2):
        frames.append(
            {"index": k, "timestamp_s": 0.5 + k, "pts_s": 0.48 + 1.02 * k, "mask_file": f"masks/clip_{k + 1}.png",
             "captions": [SCRIPT, "a drum is played"], "tags": [["drum", 0.7], ["music", 0.2]],
             "phrases": ["drum"], "detections": {"frame_index": k, "boxes": [[5, 10, 25, 30]], "scores": [0.91],
             "phrases": ["drum"]}, "frame_index": k, "height": height, "width": width, "union_area": 900,
             "objects": objects if k == 0 else []}
        )  # fmt: skip
    return {
        "version": 1,
        "meaningful": False,
        "clip": {"name": "clip", "path": "/clips/c.mp4", "duration_s": 2.0, "width": width, "height": height},
        "audio": {"rms_dbfs": -20.0, "audible": True},
        "translator": {"name": "lexicon", "model": "builtin-lexicon-v1"},
        "frames": frames,
        "models": [
            {
                "role": "grounder",
                "family": "grounding_dino",
                "model_id": "tiny-grounding_dino",
                "face": "tiny",
                "dtype": "auto",
                "commit": None,
            }
        ],
        "settings": {"profile": "tiny"},
        "device": "cpu",
        "timings_s": {"load": 0.1, "ground": 0.2, "segment": 0.3},
        "model_load_s": {"grounder": 0.5},
        "usage": {"captioner": {"input_tokens": 90, "output_tokens": 24, "calls": 1}},
        "tokens": {"input": 90, "output": 24},
        "warnings": ["built-in lexicon translator used"],
        "outputs": {"result": str(run / "result.json")},
    }


def make_run(run: Path, *, finished: bool = True) -> Path:
    """A run folder as an agent run writes it: trace, sampled frames, overlays, and (if finished) masks + result."""
    (run / "work" / "frames").mkdir(parents=True)
    (run / "overlays").mkdir()
    for k in range(2):
        Image.new("RGB", SIZE, (40 * k, 120, 200)).save(run / "work" / "frames" / f"{k:05d}.png")
    Image.new("RGB", SIZE, (200, 40, 40)).save(run / "overlays" / "r1_0.png")
    Image.new("RGB", SIZE, (0, 0, 0)).save(run.parent / "outside.png")  # named by the trace, outside the run
    records = _records(1_700_000_000.0)
    if not finished:
        records = [*records[:7], _record("error", "agent", 1_700_000_003.0, error="RuntimeError: grounder crashed"),
                   _record("run_end", "agent", 1_700_000_003.0, 3000.0, status="failed")]  # fmt: skip
    with (run / "trace.jsonl").open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    if finished:
        for k, mask in enumerate(_masks()):
            write_mask_png(run / "masks" / f"clip_{k + 1}.png", mask)
        (run / "result.json").write_text(json.dumps(_result(run)), encoding="utf-8")
    return run


def _section(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}">')
    return page[start : page.index("</section>", start)]


def _render(run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert trace.main([str(run)]) == 0
    out, _ = capsys.readouterr()
    assert out.strip() == str(run / "trace.html")
    return (run / "trace.html").read_text(encoding="utf-8")


def test_page_has_every_section_and_every_record_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = _render(make_run(tmp_path / "run"), capsys)
    for section_id in SECTION_IDS:
        assert page.count(f'<section id="{section_id}">') == 1
    assert "random weights: outputs meaningless" in _section(page, "summary")
    timeline = _section(page, "timeline")
    assert timeline.count("<tr><td>") == len(_records(0.0))
    assert timeline.count('class="bar"') == 8  # the timed records
    planner = _section(page, "planner")
    assert "segment_frames" in planner and "finish" in planner
    assert "I will segment the drum." in planner and "321" in planner
    assert "refine" in planner and "score 0.42 below 0.6" in planner
    tools = _section(page, "tools")
    assert "union_area" in tools and "not found in the run folder" in tools
    critiques = _section(page, "critiques")
    assert ">0.42<" in critiques and "mask covers the floor" in critiques and "snare drum" in critiques
    masks = _section(page, "masks")
    assert "a drum is played" in masks and "overlay (result RLE)" in masks and "overlay (mask PNG)" in masks
    frames = [f["index"] for f in json.loads((tmp_path / "run" / "result.json").read_text())["frames"]]
    assert re.findall(r"<h4>frame (\d+)</h4>", masks) == [str(k + 1) for k in frames]  # as the mask files count
    # Frame 1 was sampled between two video frames (the one on screen started earlier); frame 2 on a frame's start.
    assert re.findall(r"frame on screen then starts at ([\d.]+) s", masks) == ["0.48"]
    costs = _section(page, "costs")
    assert "721" in costs and "50" in costs  # planner tokens summed over its two turns
    assert "critic timed out once" in page and "few boxes above threshold" in page


def test_page_is_self_contained_and_escapes_untrusted_text(tmp_path: Path, capsys) -> None:
    page = _render(make_run(tmp_path / "run"), capsys)
    # tool images: frame + overlay (the ../ and https paths are refused); critique: 1; masks: 2 frames x 2.
    assert page.count("data:image/jpeg;base64,") == 2 + 1 + 4
    for src in re.findall(r"""<img[^>]*\ssrc="([^"]*)\"""", page):
        assert src.startswith("data:image/")
    assert not EXTERNAL.search(page)
    assert "<link" not in page and "<script" not in page.lower()
    assert SCRIPT not in page
    assert ESCAPED_SCRIPT in _section(page, "masks") and ESCAPED_SCRIPT in _section(page, "planner")


def test_failed_run_renders_with_its_error(tmp_path: Path, capsys) -> None:
    page = _render(make_run(tmp_path / "run", finished=False), capsys)
    for section_id in SECTION_IDS:
        assert f'<section id="{section_id}">' in page
    summary = _section(page, "summary")
    assert "the run failed" in summary and "RuntimeError: grounder crashed" in summary
    assert ">failed<" in summary
    assert "no result.json" in _section(page, "masks")
    assert "segment_frames" in _section(page, "planner")
    assert "Time per stage (trace)" in _section(page, "costs")


def test_cut_off_trace_line_is_noted_not_fatal(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run", finished=False)
    with (run / "trace.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"ts": 1700000004.0, "kind": "no')  # a crash mid-write
    page = _render(run, capsys)
    assert "is not JSON (skipped)" in page


@pytest.mark.parametrize("layout", ["missing", "no trace"])
def test_cli_exits_2_with_one_line_for_a_non_run(tmp_path: Path, capsys, layout: str) -> None:
    run = tmp_path / "run"
    if layout == "no trace":
        run.mkdir()
    assert trace.main([str(run)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and str(run) in err
    assert not (run / "trace.html").exists()


def test_out_option_writes_elsewhere(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run")
    out = tmp_path / "pages" / "page.html"
    assert trace.main([str(run), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")
    assert not (run / "trace.html").exists()
    capsys.readouterr()


def test_real_tiny_run_renders(tmp_path: Path, capsys) -> None:
    from agent import solve  # here, so the page tests stand even while the pipeline is being changed
    from tools.tracing import read_trace

    clip = write_test_clip(tmp_path / "clip.mp4", seconds=2, size=(64, 48))
    run = tmp_path / "run"
    assert solve.main([str(clip), "--profile", "tiny", "--out", str(run), "--no-overlay"]) == 0
    capsys.readouterr()
    start = time.perf_counter()
    page = _render(run, capsys)
    assert time.perf_counter() - start < 5
    result = json.loads((run / "result.json").read_text(encoding="utf-8"))
    for section_id in SECTION_IDS:
        assert f'<section id="{section_id}">' in page
    # Final masks: frame + overlay per frame; each segment and critique record shows one overlay per frame.
    shown = sum(
        len(r.get("images", [])) for r in read_trace(run / "trace.jsonl") if r["kind"] in {"tool_call", "critique"}
    )
    assert shown >= 2 * len(result["frames"])
    assert page.count("data:image/jpeg;base64,") == 2 * len(result["frames"]) + shown
    assert "random weights: outputs meaningless" in page
    assert not EXTERNAL.search(page) and "<script" not in page.lower()


def test_odd_field_types_do_not_break_a_section(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    run.mkdir()
    odd = [
        {"kind": "llm_call", "ts": "soon", "ms": None, "messages": "hi", "tool_calls": {"name": 1}, "round": [1]},
        {"kind": "tool_call", "ts": 1.0, "ms": -5, "images": {"a": 1}, "arguments": None, "result": float("inf")},
        {"kind": "critique", "ts": 2.0, "verdict": ["ok"], "findings": "area too big", "images": "/etc/hosts"},
        {"kind": 7, "name": None},
        ["not", "a", "record"],
    ]
    (run / "trace.jsonl").write_text("\n".join(json.dumps(r) for r in odd), encoding="utf-8")
    huge = {"size": [10**6, 10**6], "counts": "0"}  # a forged size must not allocate a terabyte
    result = {
        "frames": [{"index": "0", "objects": [{"rle": "bad"}, {"rle": huge}], "tags": 3}],
        "usage": {"x": 1},
        "clip": [],
    }
    (run / "result.json").write_text(json.dumps(result), encoding="utf-8")
    page = _render(run, capsys)
    assert "could not be rendered" not in page
    for section_id in SECTION_IDS:
        assert f'<section id="{section_id}">' in page
    assert "data:image" not in page  # /etc/hosts is outside the run folder and no frame exists
