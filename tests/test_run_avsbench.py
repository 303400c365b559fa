"""The AVSBench runner (evals/run_avsbench.py, evals.benchmark): scoring, fakes end to end, the tiny profile,
kill-and-resume, failing clips and bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from evals.benchmark import BenchmarkOptions, TooManyErrorsError, run_benchmark
from evals.benchmark.cli import main
from evals.benchmark.clips import FRAME_OFFSET_S, frame_timestamps, oracle_phrases
from evals.benchmark.export import export_result
from evals.benchmark.phrases import class_of, phrase_class_table
from evals.datasets import EvalClip, load_clips, read_avss_classes
from evals.datasets.masks import load_binary_mask, load_index_mask
from evals.metrics import BinaryMetricAccumulator
from evals.scoring import load_ground_truth, prediction_paths
from evals.synthetic import write_synthetic
from tests.avsbench_fakes import ColourGrounder, FakeModels, s4_colours
from tools.datamodel import FrameMasks, ObjectMask
from tools.errors import InputError
from tools.vocabulary import AVSS_CLASSES

REPO = Path(__file__).resolve().parents[1]
SUMMARY = ("miou", "fscore", "fscore_binary", "n_videos", "n_frames")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 videos per subset: the test split holds videos 0, 3, 6 (S4: baby, dog, horse; MS3: video 3 is silent in
    its last second); AVSS: 6 videos, the test split holds v1s, v1m, v2."""
    root = tmp_path_factory.mktemp("avsbench")
    write_synthetic(root, "s4", n=7)
    write_synthetic(root, "ms3", n=7)
    write_synthetic(root, "avss", n=6)
    return root


def options(root: Path, subset: str, out: Path, **kw) -> BenchmarkOptions:
    return BenchmarkOptions(root=root, subset=subset, out=out, show_progress=False, cache=False, **kw)


def expected_metrics(clips: list[EvalClip], preds: list[np.ndarray]) -> dict:
    """Official metrics straight from evals.metrics on (T, H, W) predicted masks."""
    acc = BinaryMetricAccumulator()
    for clip, pred in zip(clips, preds, strict=True):
        acc.add(pred, np.stack(load_ground_truth(clip)), name=clip.name)
    return acc.aggregate()


def assert_summary(got: dict, want: dict) -> None:
    for key in SUMMARY:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ (a) scoring only
def test_predictions_equal_to_gt_score_one_through_the_script(data: Path, tmp_path: Path) -> None:
    clips = load_clips(data, "s4")
    for clip in clips:
        for gt, pred in zip(clip.gt_mask_paths, prediction_paths(clip, tmp_path / "pred"), strict=True):
            pred.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(gt, pred)
    cmd = [sys.executable, "evals/run_avsbench.py", "--root", str(data), "--subset", "s4", "--split", "test",
           "--predictions", str(tmp_path / "pred"), "--out", str(tmp_path / "report")]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    line = last_json_line(done.stdout)
    assert line["miou"] == pytest.approx(1.0, abs=1e-6) and line["fscore"] == pytest.approx(1.0, abs=1e-6)
    assert line["fscore_binary"] == pytest.approx(1.0, abs=1e-6)
    assert (line["n_videos"], line["n_frames"]) == (3, 15)
    for name in ("report.md", "metrics.json", "per_video.csv", "per_category.csv"):
        assert (tmp_path / "report" / name).is_file(), name


# ------------------------------------------------------------------------------------------ (b) fakes end to end
def test_oracle_prompts_with_fakes_match_metrics_computed_directly(data: Path, tmp_path: Path) -> None:
    clips = load_clips(data, "s4")
    assert [c.category for c in clips] == ["baby_laughter", "dog_barking", "horse_clip-clop"]
    colours = {p: c for p, c in s4_colours().items() if p in ("baby", "dog")}  # the horse is never found
    models = FakeModels(ColourGrounder(colours))
    metrics = run_benchmark(
        options(data, "s4", tmp_path / "out", prompts="oracle", settings=models.settings), registry=models.registry
    )
    # Oracle prompts: each clip's class name on every frame, and no audio model is asked anything.
    assert Counter(map(tuple, models.grounder.phrases_seen)) == {("baby",): 5, ("dog",): 5, ("horse",): 5}
    assert models.captioner.calls == []
    # The fakes reproduce the GT rectangles exactly where the class is known, nothing for the horse.
    gts = [np.stack(load_ground_truth(c)) for c in clips]
    want = expected_metrics(clips, [gts[0], gts[1], np.zeros_like(gts[2])])
    assert_summary(metrics, want)
    assert metrics["miou"] < 1 and metrics["n_failed"] == 0 and metrics["prompts"] == "oracle"
    assert [row["class"] for row in metrics["per_category"]] == [c.category for c in clips]
    # The runner's prediction tree holds the union masks the pipeline wrote.
    pred = load_binary_mask(prediction_paths(clips[1], tmp_path / "out" / "predictions")[2])
    np.testing.assert_array_equal(pred, gts[1][2])
    report = (tmp_path / "out" / "report.md").read_text()
    assert "OpenAVS* (clip class names as prompts, no ALM/LLM) ← same setting" in report
    assert "| dog_barking | 1 | 1.0000 |" in report


def test_agent_graph_runs_the_benchmark_and_critiques_each_clip(data: Path, tmp_path: Path) -> None:
    clips = load_clips(data, "s4")
    colours = {p: c for p, c in s4_colours().items() if p in ("baby", "dog")}  # the horse is never found
    pipeline = FakeModels(ColourGrounder(colours))
    want = run_benchmark(
        options(data, "s4", tmp_path / "pipe", prompts="oracle", settings=pipeline.settings),
        registry=pipeline.registry,
    )
    agent = FakeModels(ColourGrounder(colours))
    got = run_benchmark(
        options(data, "s4", tmp_path / "agent", prompts="oracle", graph="agent", settings=agent.settings),
        registry=agent.registry,
    )
    # The same phrases ground the same boxes: refinement cannot find the horse, so the scores are the pipeline's.
    assert_summary(got, want)
    assert got["graph"] == "agent" and got["n_failed"] == 0
    for clip in clips:
        result = json.loads((tmp_path / "agent" / "clips" / clip.category / clip.name / "result.json").read_text())
        assert result["agent"]["rounds"], clip.name
    horse = json.loads((tmp_path / "agent" / "clips" / clips[2].category / clips[2].name / "result.json").read_text())
    assert "empty_mask" in horse["agent"]["rounds"][0]["verdict"]["problems"]
    assert len(horse["agent"]["rounds"]) > 1  # it tried to refine


def test_audio_prompts_on_ms3_with_fakes_match_metrics_computed_directly(data: Path, tmp_path: Path) -> None:
    clips = load_clips(data, "ms3")
    models = FakeModels(ColourGrounder(any_colour=True), captions=["a dog is barking"])
    metrics = run_benchmark(options(data, "ms3", tmp_path / "out", settings=models.settings), registry=models.registry)
    assert models.captioner.calls and all(p == ["dog"] for p in models.grounder.phrases_seen)
    # Every drawn rectangle is found on every frame. A silent object stays drawn where it last was, so on the
    # silent last second the prediction is the previous second's GT while the GT is empty.
    preds = []
    for clip in clips:
        gt = np.stack(load_ground_truth(clip))
        pred = gt.copy()
        for k in range(1, len(gt)):
            if not gt[k].any():
                pred[k] = pred[k - 1]
        preds.append(pred)
    assert any(not np.array_equal(p, np.stack(load_ground_truth(c))) for p, c in zip(preds, clips, strict=True))
    assert_summary(metrics, expected_metrics(clips, preds))
    costs = metrics["costs"]
    assert costs["stages"]["describe_audio"]["calls"] == 3 and costs["stages"]["segment"]["calls"] == 15
    assert metrics["provenance"]["models"][0]["model_id"] == "fake-captioner"


# ------------------------------------------------------------------------------------------ (c) the tiny profile
@pytest.mark.parametrize(("subset", "limit", "workers"), [("s4", 2, 1), ("avss", 2, 2)])
def test_tiny_profile_completes_a_run(data: Path, tmp_path: Path, subset: str, limit: int, workers: int) -> None:
    out = tmp_path / "out"
    metrics = run_benchmark(options(data, subset, out, profile="tiny", limit=limit, workers=workers))
    assert metrics["n_videos"] == 2 and metrics["n_failed"] == 0 and metrics["meaningful"] is False
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["fscore"] <= 1.0
    for name in ("report.md", "metrics.json", "per_video.csv", "per_category.csv", "errors.jsonl"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["provenance"]["versions"]["langgraph"] and saved["provenance"]["fscore_batch_size"] == 1
    assert {"describe_audio", "ground", "segment"} <= set(saved["costs"]["stages"])
    assert saved["costs"]["stages"]["describe_audio"]["input_tokens"] > 0
    result = json.loads(next((out / "clips").rglob("result.json")).read_text())
    assert [f["timestamp_s"] for f in result["frames"]] == pytest.approx(frame_timestamps(5), abs=1e-4)
    assert "overlay" not in result["outputs"]
    if subset == "avss":
        assert {"semantic_miou", "semantic_fscore", "semantic_miou_unpadded"} <= set(metrics)
        assert saved["phrase_mapping"]["n_objects"] >= saved["phrase_mapping"]["n_unmapped_objects"]
        assert "AVSS class" in (out / "report.md").read_text()


def test_sam3_video_mode_through_the_command_line(data: Path, tmp_path: Path, capsys) -> None:
    """`--profile sam3 --segmenter sam3:tiny --segmentation video`: the runner builds the settings as agent.solve
    does, so SAM 3's video model (tiny face) segments each clip and is the only vision model recorded."""
    out = tmp_path / "video"
    argv = ["--root", str(data), "--subset", "s4", "--prompts", "oracle", "--limit", "1", "--out", str(out)]
    argv += ["--profile", "sam3", "--segmenter", "sam3:tiny", "--segmentation", "video", "--no-cache", "--quiet"]
    assert main(argv) == 0
    line = last_json_line(capsys.readouterr().out)
    assert line["n_videos"] == 1 and line["n_failed"] == 0 and line["meaningful"] is False
    saved = json.loads((out / "metrics.json").read_text())
    assert [m["role"] for m in saved["provenance"]["models"]] == ["video_segmenter"]
    result = json.loads(next((out / "clips").rglob("result.json")).read_text())
    assert len(result["frames"]) == 5


# ------------------------------------------------------------------------------------------ (d) kill and rerun
def test_sigkill_and_rerun_gives_the_uninterrupted_metrics(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    cli = ["--root", str(data), "--subset", "s4", "--prompts", "oracle", "--out", str(out), "--no-cache", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(  # 0.15 s per segmenter call: about 0.8 s per clip
        [sys.executable, "tests/avsbench_fakes.py", "--slow", "0.15", *cli], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    try:
        while not list(out.glob("clips/*/*/result.json")):
            assert proc.poll() is None, "the runner ended before the first clip finished"
            assert time.monotonic() < deadline, "no clip finished in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    finished = list(out.glob("clips/*/*/result.json"))
    assert 1 <= len(finished) < 3 and not (out / "metrics.json").exists()
    stamp = {p: p.stat().st_mtime_ns for p in finished}

    rerun = FakeModels(ColourGrounder(s4_colours()))
    assert main(cli, registry=rerun.registry, settings=rerun.settings) == 0
    assert all(p.stat().st_mtime_ns == t for p, t in stamp.items())  # finished clips were not run again
    assert len(rerun.grounder.phrases_seen) == 5 * (3 - len(finished))

    fresh = FakeModels(ColourGrounder(s4_colours()))
    clean = run_benchmark(
        options(data, "s4", tmp_path / "clean", prompts="oracle", settings=fresh.settings), registry=fresh.registry
    )
    resumed = json.loads((out / "metrics.json").read_text())
    assert_summary(resumed, clean)
    assert resumed["miou"] == pytest.approx(1.0) and resumed["n_failed"] == 0


# ------------------------------------------------------------------------------------------ (e) failing clips
def test_a_failing_clip_is_recorded_counted_and_scored_empty(data: Path, tmp_path: Path) -> None:
    clips = load_clips(data, "s4")
    out = tmp_path / "out"
    failing = FakeModels(ColourGrounder(s4_colours(), fail_on=["dog"]))
    metrics = run_benchmark(
        options(data, "s4", out, prompts="oracle", settings=failing.settings), registry=failing.registry
    )
    assert metrics["n_failed"] == 1 and metrics["n_videos"] == 3
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["name"] for e in errors] == [clips[1].name] and "scripted grounder failure" in errors[0]["error"]
    assert (out / "clips" / "dog_barking" / clips[1].name / "error.json").is_file()
    gts = [np.stack(load_ground_truth(c)) for c in clips]
    assert_summary(metrics, expected_metrics(clips, [gts[0], np.zeros_like(gts[1]), gts[2]]))
    assert "failed" in (out / "per_video.csv").read_text()

    # A rerun retries the failed clip from scratch (and only it).
    fixed = FakeModels(ColourGrounder(s4_colours()))
    again = run_benchmark(options(data, "s4", out, prompts="oracle", settings=fixed.settings), registry=fixed.registry)
    assert again["n_failed"] == 0 and again["miou"] == pytest.approx(1.0)
    assert fixed.grounder.phrases_seen == [["dog"]] * 5
    assert (out / "errors.jsonl").read_text() == ""


def test_a_clip_with_a_damaged_frame_fails_alone_and_is_scored_empty(data: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(data / "Single-source", root / "Single-source")
    clips = load_clips(root, "s4")
    clips[1].frame_paths[0].write_bytes(b"not an image")
    models = FakeModels(ColourGrounder(s4_colours()))
    metrics = run_benchmark(
        options(root, "s4", tmp_path / "out", prompts="oracle", settings=models.settings), registry=models.registry
    )
    assert metrics["n_failed"] == 1 and metrics["n_videos"] == 3
    [error] = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert error["name"] == clips[1].name and f"{clips[1].frame_paths[0]}: unreadable frame image" in error["error"]
    gts = [np.stack(load_ground_truth(c)) for c in clips]
    assert_summary(metrics, expected_metrics(clips, [gts[0], np.zeros_like(gts[1]), gts[2]]))


def test_max_errors_zero_stops_with_exit_1(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = FakeModels(ColourGrounder(s4_colours(), fail_on=["baby"]))
    argv = ["--root", str(data), "--subset", "s4", "--prompts", "oracle", "--out", str(tmp_path / "out"),
            "--max-errors", "0", "--quiet", "--no-cache"]  # fmt: skip
    assert main(argv, registry=failing.registry, settings=failing.settings) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1
    assert "--max-errors 0" in captured.err
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert len((tmp_path / "out" / "errors.jsonl").read_text().splitlines()) == 1
    with pytest.raises(TooManyErrorsError):
        run_benchmark(
            options(data, "s4", tmp_path / "out2", prompts="oracle", settings=failing.settings, max_errors=0),
            registry=failing.registry,
        )


# ------------------------------------------------------------------------------------------ (f) bad input
@pytest.mark.parametrize(
    "argv",
    [
        ["--root", "/nonexistent/avsbench", "--subset", "s4"],
        ["--root", ".", "--subset", "s5"],
        ["--root", ".", "--subset", "s4", "--workers", "0"],
        ["--subset", "s4"],
    ],
)
def test_bad_input_exits_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse errors
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err


def test_rerun_with_other_settings_is_refused(data: Path, tmp_path: Path) -> None:
    models = FakeModels(ColourGrounder(s4_colours()))
    run_benchmark(
        options(data, "s4", tmp_path, prompts="oracle", limit=1, settings=models.settings), registry=models.registry
    )
    with pytest.raises(InputError, match="other prompts"):
        run_benchmark(options(data, "s4", tmp_path, limit=1, settings=models.settings), registry=models.registry)


def test_a_folder_of_other_files_is_not_claimed(data: Path, tmp_path: Path) -> None:
    (tmp_path / "predictions").mkdir()
    (tmp_path / "predictions" / "mine.png").write_bytes(b"someone's own file")
    models = FakeModels(ColourGrounder(s4_colours()))
    with pytest.raises(InputError, match="already holds other files"):
        run_benchmark(options(data, "s4", tmp_path, limit=1, settings=models.settings), registry=models.registry)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["mine.png", "predictions"]


# ------------------------------------------------------------------------------------------ the pieces
def test_frame_times_sit_near_the_end_of_each_second() -> None:
    assert FRAME_OFFSET_S == 15 / 16
    assert frame_timestamps(3) == [0.9375, 1.9375, 2.9375]


def test_oracle_phrases_use_groundable_names(data: Path) -> None:
    s4 = load_clips(data, "s4")[1]
    assert oracle_phrases(s4) == ("dog",)
    avss = next(c for c in load_clips(data, "avss") if c.label == "v1m")
    names = read_avss_classes(data)
    table = phrase_class_table(names)
    assert [names[class_of(p, table)] for p in oracle_phrases(avss)] == list(avss.raw_classes)


def test_phrases_map_back_to_avss_classes() -> None:
    names = ["background", *AVSS_CLASSES]
    table = phrase_class_table(names)
    for phrase, cls in [("ambulance", "emergency-car"), ("emergency car", "emergency-car"), ("Dogs", "dog"),
                        ("suona horn", "sorna"), ("coyote", "wolf"), ("lawn mower", "mower"), ("buses", "bus"),
                        ("glockenspiel", "marimba"), ("chainsaw", "saw")]:  # fmt: skip
        assert class_of(phrase, table) == names.index(cls), phrase
    assert class_of("person", table) is None and class_of("background", table) is None


def test_semantic_export_paints_classes_and_counts_unmapped(data: Path, tmp_path: Path) -> None:
    clip = next(c for c in load_clips(data, "avss") if c.label == "v1s")
    names = read_avss_classes(data)
    dog, man = np.zeros((4, 6), bool), np.zeros((4, 6), bool)
    dog[:2, :4] = True
    man[1:3, 2:] = True
    objects = (
        ObjectMask(man, "man", (2, 1, 6, 3), 0.9, 0.9),
        ObjectMask(dog, "dog", (0, 0, 4, 2), 0.5, 0.9),  # lower score: painted first, under the man
        ObjectMask(dog, "person", (0, 0, 4, 2), 0.95, 0.9),
    )
    frames = [{**FrameMasks(k, 4, 6, objects if k == 0 else ()).to_dict()} for k in range(clip.frame_count)]
    unmapped: Counter[str] = Counter()
    export_result(clip, tmp_path, {"frames": frames}, tmp_path / "pred", phrase_class_table(names), unmapped)
    got = load_index_mask(prediction_paths(clip, tmp_path / "pred")[0])
    want = np.zeros((4, 6), np.int64)
    want[dog] = names.index("dog")
    want[man] = names.index("man")
    np.testing.assert_array_equal(got, want)
    assert unmapped == {"person": 1}
