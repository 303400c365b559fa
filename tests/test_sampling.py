"""Frame timestamp strategies and per-frame audio windows (tools.sampling)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.clipfactory import frame_number_of, write_test_clip
from tools.errors import InputError
from tools.media import ClipInfo, decode_frames, probe_clip
from tools.sampling import FrameStrategy, audio_windows, parse_frame_strategy, select_timestamps


def _info(duration_s: float, fps: float = 25.0, n_frames: int | None = None) -> ClipInfo:
    return ClipInfo(
        path="clip.mp4",
        duration_s=duration_s,
        width=64,
        height=48,
        rotation_deg=0,
        fps=fps,
        n_frames=n_frames if n_frames is not None else max(1, round(duration_s * fps)),
        has_audio=True,
        audio_sample_rate=16000,
        audio_channels=1,
        video_codec="h264",
    )


# ------------------------------------------------------------------------------------------------- strategies


def test_parse_frame_strategy_accepts_the_three_forms() -> None:
    assert parse_frame_strategy("avsbench") == FrameStrategy("avsbench")
    assert parse_frame_strategy(" Uniform:8 ") == FrameStrategy("uniform", count=8)
    assert parse_frame_strategy("fps:2.5") == FrameStrategy("fps", rate=2.5)
    for text in ("avsbench", "uniform:8", "fps:2.5", "fps:1"):
        assert str(parse_frame_strategy(text)) == text


@pytest.mark.parametrize(
    "text",
    ["", "random", "uniform", "uniform:", "uniform:0", "uniform:-3", "uniform:2.5", "fps:0", "fps:-1",
     "fps:abc", "fps:nan", "fps:inf", "avsbench:5", "every:3"],
)  # fmt: skip
def test_parse_frame_strategy_rejects_everything_else(text: str) -> None:
    with pytest.raises(InputError, match=r"avsbench.*uniform:N.*fps:F"):
        parse_frame_strategy(text)


def test_strategy_validates_its_fields() -> None:
    with pytest.raises(ValueError):
        FrameStrategy("uniform")
    with pytest.raises(ValueError):
        FrameStrategy("fps", rate=0.0)


def test_avsbench_rule_25fps() -> None:
    times = select_timestamps(_info(5.0), "avsbench")
    assert times == pytest.approx([i / 25 for i in (23, 48, 73, 98, 123)])


def test_avsbench_rule_ntsc() -> None:
    fps = 30000 / 1001
    times = select_timestamps(_info(5.005, fps=fps), FrameStrategy("avsbench"))
    # fi = round(29.97) = 30: int(s*30 + 28.125)
    assert times == pytest.approx([i / fps for i in (28, 58, 88, 118, 148)])


def test_avsbench_rule_short_and_fractional_clips() -> None:
    assert select_timestamps(_info(0.4), "avsbench") == pytest.approx([0.36])  # the last frame
    assert select_timestamps(_info(3.2), "avsbench") == pytest.approx([0.92, 1.92, 2.92])
    # Short of 5 s by less than a frame: still one frame per second, never at or past the end.
    almost = select_timestamps(_info(4.97), "avsbench")
    assert len(almost) == 5 and max(almost) < 4.97
    for duration in (0.05, 0.4, 0.99, 1.0, 1.93, 2.5, 7.0, 10.001):
        times = select_timestamps(_info(duration), "avsbench")
        assert times == sorted(times) and all(0 <= t < duration for t in times)
        assert len(times) == max(1, int(duration + 0.04))


def test_avsbench_frames_decode_to_the_official_indices(tmp_path: Path) -> None:
    clip = write_test_clip(tmp_path / "c.mp4", audio=False)
    times = select_timestamps(probe_clip(clip), "avsbench")
    assert [frame_number_of(f.image) for f in decode_frames(clip, times)] == [23, 48, 73, 98, 123]
    short = write_test_clip(tmp_path / "short.mp4", seconds=0.4, audio=False)
    times = select_timestamps(probe_clip(short), "avsbench")
    assert [frame_number_of(f.image) for f in decode_frames(short, times)] == [9]


def test_uniform_and_fps_strategies() -> None:
    assert select_timestamps(_info(8.0), "uniform:4") == pytest.approx([1.0, 3.0, 5.0, 7.0])
    assert select_timestamps(_info(5.0), "uniform:1") == pytest.approx([2.5])
    assert select_timestamps(_info(5.0), "fps:2") == pytest.approx([k / 2 for k in range(10)])
    assert select_timestamps(_info(1.0), "fps:3") == pytest.approx([0, 1 / 3, 2 / 3])
    assert select_timestamps(_info(0.3), "fps:1") == [0.0]
    for text in ("uniform:7", "fps:3.3"):
        times = select_timestamps(_info(4.3), text)
        assert times == sorted(times) and all(0 <= t < 4.3 for t in times)


@pytest.mark.parametrize("text", ["avsbench", "uniform:5", "fps:10"])
def test_one_frame_clip_gives_one_timestamp(text: str) -> None:
    assert select_timestamps(_info(0.04, n_frames=1), text) == [0.0]


def test_max_frames_keeps_the_first_ones() -> None:
    assert select_timestamps(_info(5.0), "fps:2", max_frames=3) == pytest.approx([0.0, 0.5, 1.0])
    assert len(select_timestamps(_info(5.0), "avsbench", max_frames=10)) == 5
    with pytest.raises(ValueError):
        select_timestamps(_info(5.0), "avsbench", max_frames=0)


# ------------------------------------------------------------------------------------------------------ audio


def test_audio_windows_end_at_the_frame_by_default() -> None:
    sr = 100
    x = np.arange(1, 301, dtype=np.float32)  # 3 s; value k+1 at sample k
    w = audio_windows(x, sr, [1.0, 0.5, 3.0, 3.5])
    assert w.shape == (4, 100) and w.dtype == np.float32
    np.testing.assert_array_equal(w[0], x[0:100])
    np.testing.assert_array_equal(w[1, :50], 0)
    np.testing.assert_array_equal(w[1, 50:], x[:50])
    np.testing.assert_array_equal(w[2], x[200:300])
    np.testing.assert_array_equal(w[3, :50], x[250:300])
    np.testing.assert_array_equal(w[3, 50:], 0)


def test_audio_windows_other_anchors_and_lengths() -> None:
    sr = 100
    x = np.arange(1, 301, dtype=np.float32)
    centre = audio_windows(x, sr, [1.0], window_s=0.5, anchor="center")
    assert centre.shape == (1, 50)
    np.testing.assert_array_equal(centre[0], x[75:125])
    start = audio_windows(x, sr, [2.8], window_s=0.5, anchor="start")
    np.testing.assert_array_equal(start[0, :20], x[280:300])
    np.testing.assert_array_equal(start[0, 20:], 0)
    assert audio_windows(x, sr, []).shape == (0, 100)


def test_audio_windows_of_empty_audio_are_zero() -> None:
    w = audio_windows(np.zeros(0, np.float32), 16000, [0.5, 1.5])
    assert w.shape == (2, 16000) and not w.any()


def test_audio_windows_reject_bad_arguments() -> None:
    with pytest.raises(ValueError):
        audio_windows(np.zeros((2, 10), np.float32), 100, [0.0])
    with pytest.raises(ValueError):
        audio_windows(np.zeros(10, np.float32), 100, [0.0], anchor="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        audio_windows(np.zeros(10, np.float32), 100, [0.0], window_s=0.001)
