"""tools.media on real (tiny) mp4s written by tests/clipfactory.py."""

from __future__ import annotations

import bisect
import inspect
import math
import random
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest

from tests.clipfactory import (
    corrupt_copy,
    frame_array,
    frame_number_of,
    frame_times_s,
    marker_corner,
    write_audio_only,
    write_test_clip,
)
from tools.errors import InputError
from tools.media import (
    ClipInfo,
    DecodedFrame,
    _FrameCursor,
    audio_rms_dbfs,
    decode_audio,
    decode_frames,
    is_silent,
    iter_audio,
    probe_clip,
)
from tools.packet_skipping import decode_wanted


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "plain": write_test_clip(d / "plain.mp4"),
        "ntsc": write_test_clip(d / "ntsc.mp4", fps=30000 / 1001),
        "odd": write_test_clip(d / "odd.mp4", size=(63, 47), seconds=1.0),
        "stereo": write_test_clip(d / "stereo.mp4", channels=2, sample_rate=44100, seconds=2.0),
        "mute": write_test_clip(d / "mute.mp4", audio=False, seconds=2.0),
        "silent": write_test_clip(d / "silent.mp4", silent=True, seconds=2.0),
        "irregular": write_test_clip(d / "irregular.mp4", irregular=True),
        "rot90": write_test_clip(d / "rot90.mp4", rotation_deg=90, seconds=1.0),
        "rot180": write_test_clip(d / "rot180.mp4", rotation_deg=180, seconds=1.0),
        "rot270": write_test_clip(d / "rot270.mp4", rotation_deg=270, seconds=1.0),
        "long": write_test_clip(d / "long.mp4", seconds=60.0, fps=10.0, gop=20, audio=False),
        "one": write_test_clip(d / "one.mp4", seconds=0.04),
    }


# ------------------------------------------------------------------------------------------------------ probe


def test_probe_reports_stream_facts(clips: dict[str, Path]) -> None:
    info = probe_clip(clips["plain"])
    assert info.duration_s == pytest.approx(5.0, abs=1e-3)
    assert info.fps == pytest.approx(25.0)
    assert info.n_frames == 125
    assert (info.width, info.height, info.rotation_deg) == (64, 48, 0)
    assert info.has_audio and info.audio_sample_rate == 16000 and info.audio_channels == 1
    assert info.video_codec == "h264"
    assert info.to_dict()["duration_s"] == info.duration_s
    assert set(info.to_dict()) == set(ClipInfo.__dataclass_fields__)


def test_probe_other_clips(clips: dict[str, Path]) -> None:
    ntsc = probe_clip(clips["ntsc"])
    assert ntsc.fps == pytest.approx(30000 / 1001) and ntsc.n_frames == 150
    odd = probe_clip(clips["odd"])
    assert (odd.width, odd.height) == (63, 47)
    stereo = probe_clip(clips["stereo"])
    assert (stereo.audio_sample_rate, stereo.audio_channels) == (44100, 2)
    mute = probe_clip(clips["mute"])
    assert not mute.has_audio and mute.audio_sample_rate is None and mute.audio_channels is None
    one = probe_clip(clips["one"])
    assert one.n_frames == 1 and one.duration_s == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("name", "rotation", "corner"), [("rot90", 90, "tr"), ("rot180", 180, "br"), ("rot270", 270, "bl")]
)
def test_rotation_is_reported_and_applied(clips: dict[str, Path], name: str, rotation: int, corner: str) -> None:
    # The marker sits top-left in the coded picture; turning it clockwise by `rotation` moves it to `corner`.
    info = probe_clip(clips[name])
    assert info.rotation_deg == rotation
    expected_size = (48, 64) if rotation in (90, 270) else (64, 48)
    assert (info.width, info.height) == expected_size
    (frame,) = decode_frames(clips[name], [0.5])
    assert frame.image.size == expected_size
    assert marker_corner(frame.image) == corner
    assert frame_number_of(frame.image) == 12


def _bad_inputs(d: Path, plain: Path) -> dict[str, Path]:
    (d / "a_directory").mkdir(exist_ok=True)
    (d / "empty.mp4").write_bytes(b"")
    rng = np.random.default_rng(0)  # fixed bytes: some random bytes do probe as a format
    (d / "random.mp4").write_bytes(rng.bytes(20000))
    (d / "random.bin").write_bytes(rng.bytes(40000))  # FFmpeg's "bin" demuxer would show this as text art
    (d / "notes.txt").write_text("not a video\n")
    (d / "notes.mp4").write_text("not a video either\n")
    return {
        "missing": d / "missing.mp4",
        "directory": d / "a_directory",
        "empty": d / "empty.mp4",
        "truncated": corrupt_copy(plain, d / "truncated.mp4", 0.5),
        "random": d / "random.mp4",
        "random_bin": d / "random.bin",
        "text": d / "notes.txt",
        "text_mp4": d / "notes.mp4",
        "audio_only": write_audio_only(d / "audio_only.m4a"),
    }


_EXPECTED_WORDS = {
    "missing": "no such file",
    "directory": "directory",
    "empty": "empty",
    "truncated": "moov atom not found",
    "random": "not a readable {kind} file",
    "random_bin": "no {kind} in it",
    "text": "not a readable {kind} file",
    "text_mp4": "not a readable {kind} file",
    "audio_only": "has no video stream",
}


@pytest.mark.parametrize("kind", sorted(_EXPECTED_WORDS))
def test_bad_inputs_raise_one_line_input_errors(tmp_path: Path, clips: dict[str, Path], kind: str) -> None:
    path = _bad_inputs(tmp_path, clips["plain"])[kind]
    calls = [(probe_clip, "video"), (lambda p: list(decode_frames(p, [0.5])), "video")]
    if kind != "audio_only":
        calls.append((lambda p: decode_audio(p, [16000]), "audio"))  # the error names what the caller wanted
    for call, wanted in calls:
        start = time.monotonic()
        with pytest.raises(InputError) as err:
            call(path)
        assert time.monotonic() - start < 2.0
        message = str(err.value)
        assert "\n" not in message
        assert str(path) in message
        assert _EXPECTED_WORDS[kind].format(kind=wanted) in message


def test_file_without_frames_is_an_input_error(tmp_path: Path) -> None:
    for name in ("no_frames.mp4", "no_frames.mkv"):
        with av.open(str(tmp_path / name), mode="w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            container.start_encoding()
        with pytest.raises(InputError, match=name):
            probe_clip(tmp_path / name)


@pytest.mark.parametrize(("fmt", "ext"), [("matroska", "mkv"), ("mpegts", "ts"), ("h264", "h264")])
def test_other_containers(tmp_path: Path, fmt: str, ext: str) -> None:
    # mkv states no stream duration, ts starts at 0.08 s, raw h264 has no timestamps at all.
    path = tmp_path / f"clip.{ext}"
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(50):
            frame = av.VideoFrame.from_ndarray(frame_array(n, 64, 48), format="rgb24")
            frame.pts = n
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    info = probe_clip(path)
    assert info.duration_s == pytest.approx(2.0, abs=0.05) and info.n_frames == 50
    frames = decode_frames(path, [0.0, 0.5, 1.99])
    assert [(round(f.pts_s, 3), frame_number_of(f.image)) for f in frames] == [(0.0, 0), (0.48, 12), (1.96, 49)]


def test_audio_only_file_still_decodes_audio(tmp_path: Path) -> None:
    path = write_audio_only(tmp_path / "tone.m4a", seconds=1.0)
    assert decode_audio(path, [8000])[8000].shape == (8000,)


# ----------------------------------------------------------------------------------------------------- frames


def test_decode_frames_picks_the_frame_on_screen(clips: dict[str, Path]) -> None:
    times = [-0.5, 0.0, 0.039, 0.04, 0.5, 0.92, 0.92, 2.33, 4.96, 4.99, 10.0]
    frames = list(decode_frames(clips["plain"], times))
    assert [f.index for f in frames] == list(range(len(times)))
    assert [f.requested_s for f in frames] == times
    expected = [min(124, max(0, math.floor(t * 25 + 1e-9))) for t in times]
    assert [frame_number_of(f.image) for f in frames] == expected
    assert [f.pts_s for f in frames] == pytest.approx([n / 25 for n in expected])
    assert all(isinstance(f, DecodedFrame) and f.image.mode == "RGB" for f in frames)


@pytest.mark.parametrize("name", ["plain", "ntsc", "irregular"])
def test_decode_frames_matches_a_full_decode(clips: dict[str, Path], name: str) -> None:
    pts = frame_times_s(clips[name])
    rng = random.Random(7)
    times = sorted([rng.uniform(0, 5.1) for _ in range(25)] + pts[10:13] + [pts[-1]])
    for frame, t in zip(decode_frames(clips[name], times), times, strict=True):
        want = max(0, bisect.bisect_right(pts, t + 1e-6) - 1)
        assert frame_number_of(frame.image) == want, (t, frame.pts_s)
        assert frame.pts_s == pytest.approx(pts[want])


def test_irregular_clip_has_uneven_gaps(clips: dict[str, Path]) -> None:
    gaps = np.diff(frame_times_s(clips["irregular"]))
    assert gaps.min() < 0.03 and gaps.max() > 0.07


def test_cursor_decodes_forward_within_a_gop_and_seeks_across(clips: dict[str, Path]) -> None:
    with av.open(str(clips["long"])) as container:
        times = (0.3, 0.7, 1.2, 1.9, 45.35, 45.9)
        cursor = _FrameCursor(clips["long"], container, container.streams.video[0], times, True)
        for t in times[:4]:  # keyframes every 2 s: one GOP, no seek
            cursor.frame_at(t)
        assert cursor.seeks == 0 and cursor.decoded <= 21
        _, pts_s = cursor.frame_at(45.35)
        assert pts_s == pytest.approx(45.3)
        assert cursor.seeks == 1 and cursor.decoded <= 21 + 22
        before = cursor.decoded
        cursor.frame_at(45.9)
        assert cursor.seeks == 1 and cursor.decoded - before <= 7


def test_max_side_downscales_keeping_aspect(clips: dict[str, Path]) -> None:
    (small,) = decode_frames(clips["plain"], [1.0], max_side=32)
    assert small.image.size == (32, 24)
    assert frame_number_of(small.image) == 25
    (same,) = decode_frames(clips["plain"], [1.0], max_side=640)
    assert same.image.size == (64, 48)
    (rotated,) = decode_frames(clips["rot90"], [0.2], max_side=32)
    assert rotated.image.size == (24, 32)
    assert marker_corner(rotated.image) == "tr"


def test_decode_frames_streams_one_image_at_a_time(clips: dict[str, Path]) -> None:
    times = [i * 0.97 for i in range(60)]
    frames = decode_frames(clips["long"], times)
    assert inspect.isgenerator(frames)
    refs: list[weakref.ref[DecodedFrame]] = []
    numbers = []
    for frame in frames:
        refs.append(weakref.ref(frame))
        numbers.append(frame_number_of(frame.image))
        del frame
        assert sum(r() is not None for r in refs) <= 1
    assert numbers == [math.floor(t * 10 + 1e-9) for t in times]


def test_decode_frames_rejects_unsorted_times_at_call(clips: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="sorted"):
        decode_frames(clips["plain"], [1.0, 0.5])
    with pytest.raises(ValueError):
        decode_frames(clips["plain"], [float("nan")])
    with pytest.raises(ValueError):
        decode_frames(clips["plain"], [1.0], max_side=0)
    assert list(decode_frames(clips["plain"], [])) == []


def test_one_frame_clip_decodes(clips: dict[str, Path]) -> None:
    frames = list(decode_frames(clips["one"], [0.0, 0.02, 3.0]))
    assert [frame_number_of(f.image) for f in frames] == [0, 0, 0]


# ------------------------------------------------------------------------------------------------------ audio


def test_decode_audio_rates_lengths_and_tone(clips: dict[str, Path]) -> None:
    audio = decode_audio(clips["plain"], [16000, 8000, 48000])
    assert list(audio) == [16000, 8000, 48000]
    for rate, samples in audio.items():
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert samples.shape[0] == 5 * rate
        assert np.abs(samples).max() <= 1.0
    x = audio[16000]
    spectrum = np.abs(np.fft.rfft(x))
    assert np.argmax(spectrum) * 16000 / x.shape[0] == pytest.approx(440.0, abs=1.0)
    # Sample 0 is time 0: the tone written as sin(2*pi*440*t) comes back in phase.
    t = np.arange(16000, 32000) / 16000
    assert np.corrcoef(x[16000:32000], np.sin(2 * np.pi * 440 * t))[0, 1] > 0.99
    assert audio_rms_dbfs(x) == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.3)


def test_decode_audio_downmixes_stereo_to_mono(clips: dict[str, Path]) -> None:
    audio = decode_audio(clips["stereo"], [16000])[16000]
    assert audio.shape == (32000,)
    assert np.abs(audio).max() == pytest.approx(0.5, abs=0.05)


def test_decode_audio_without_audio_stream_gives_empty_arrays(clips: dict[str, Path]) -> None:
    audio = decode_audio(clips["mute"], [16000, 22050])
    assert {r: a.shape for r, a in audio.items()} == {16000: (0,), 22050: (0,)}
    assert all(a.dtype == np.float32 for a in audio.values())
    assert list(iter_audio(clips["mute"], 16000)) == []


def test_iter_audio_blocks(clips: dict[str, Path]) -> None:
    blocks = list(iter_audio(clips["stereo"], 22050, channels=2))
    assert all(b.shape[0] == 2 and b.dtype == np.float32 for b in blocks)
    assert sum(b.shape[1] for b in blocks) == 2 * 22050


def test_silence_and_levels(clips: dict[str, Path]) -> None:
    assert is_silent(decode_audio(clips["silent"], [16000])[16000])
    assert not is_silent(decode_audio(clips["plain"], [16000])[16000])
    assert audio_rms_dbfs(np.zeros(0, np.float32)) == -math.inf
    assert audio_rms_dbfs(np.zeros(100, np.float32)) == -math.inf
    assert audio_rms_dbfs(np.ones(100, np.float32)) == pytest.approx(0.0)
    assert is_silent(np.full(100, 1e-4, np.float32))  # -80 dBFS
    assert not is_silent(np.full(100, 1e-2, np.float32), threshold_dbfs=-60.0)


class _LateSeeker:
    """Container proxy whose first seeks land 3 s after the target, as a broken demuxer index might."""

    def __init__(self, container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
        self._container = container
        self._late = round(3.0 / stream.time_base)
        self.wrong = 2

    def seek(self, offset: int, **kwargs: object) -> None:
        if self.wrong:
            self.wrong -= 1
            offset += self._late
        self._container.seek(offset, **kwargs)

    @property
    def format(self) -> av.format.ContainerFormat:
        return self._container.format

    def demux(self, stream: av.video.stream.VideoStream) -> object:
        return self._container.demux(stream)


def test_cursor_recovers_when_a_seek_lands_late(clips: dict[str, Path]) -> None:
    with av.open(str(clips["long"])) as container:
        stream = container.streams.video[0]
        proxy = _LateSeeker(container, stream)
        cursor = _FrameCursor(clips["long"], proxy, stream, [30.05], True)  # type: ignore[arg-type]
        frame, pts_s = cursor.frame_at(30.05)
        assert pts_s == pytest.approx(30.0)
        assert frame_number_of(frame.to_image()) == 300
        assert proxy.wrong == 0 and cursor.seeks == 3


# ------------------------------------------------------------------------------------------ skipping frames


def _write_moving_noise(path: Path, codec: str, options: dict[str, str], fmt: str, frames: int = 60) -> Path:
    """A 25 fps clip of noise panning right (with its frame number in the top-left block), so the encoder
    predicts frames from each other and writes non-reference B-frames."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (48, 64 + 2 * frames, 3), dtype=np.uint8)
    with av.open(str(path), mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for n in range(frames):
            image = np.ascontiguousarray(noise[:, 2 * n : 2 * n + 64])
            image[:8, :8] = 4 * n
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = n
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _frames_decoded(path: Path, times: list[float], skip_unshown: bool) -> int:
    with av.open(str(path)) as container:
        cursor = _FrameCursor(path, container, container.streams.video[0], times, skip_unshown)
        for t in times:
            cursor.frame_at(t)
        return cursor.decoded


@pytest.mark.parametrize(
    ("codec", "options", "fmt", "skips"),
    [
        ("libx264", {"bf": "3"}, "mp4", True),
        ("libx265", {"x265-params": "bframes=4:log-level=error"}, "mp4", True),
        ("libx264", {"bf": "3"}, "matroska", True),
        ("libx264", {"bf": "3"}, "avi", False),  # AVI packets carry no presentation times: every frame is decoded
    ],
)
def test_skipping_unshown_frames_yields_the_same_frames(
    tmp_path: Path, codec: str, options: dict[str, str], fmt: str, skips: bool
) -> None:
    clip = _write_moving_noise(tmp_path / f"clip.{fmt}", codec, options, fmt)
    rng = random.Random(3)
    for trial in range(12):
        times = [0.94, 1.94] if trial == 0 else sorted(rng.uniform(-0.3, 2.6) for _ in range(rng.randint(1, 5)))
        skipped = list(decode_frames(clip, times))
        plain = list(decode_frames(clip, times, skip_unshown=False))
        assert [f.pts_s for f in skipped] == [f.pts_s for f in plain], times
        for a, b in zip(skipped, plain, strict=True):
            assert np.array_equal(np.asarray(a.image), np.asarray(b.image)), (times, a.pts_s)
    # At one frame a second the decoder skips the B-frames no wanted time shows (when the container allows).
    fewer = _frames_decoded(clip, [0.94, 1.94], True)
    every = _frames_decoded(clip, [0.94, 1.94], False)
    assert (fewer < 0.8 * every) if skips else (fewer == every), (fewer, every)


def test_skipping_holds_back_only_the_packets_between_two_wanted_times(clips: dict[str, Path]) -> None:
    """A packet waits only until a later packet's dts passes its next wanted time: over a 60 s clip at 10 fps with
    a wanted time every second, the decoder stays within a few seconds of packets of the demuxer, not the clip's."""
    read = 0

    def counted(packets: Iterator[av.Packet]) -> Iterator[av.Packet]:
        nonlocal read
        for packet in packets:
            read += 1
            yield packet

    with av.open(str(clips["long"])) as container:
        stream = container.streams.video[0]
        wanted = [k + 0.5 for k in range(60)]
        lags = [read - float(f.pts * stream.time_base) * 10 for f in decode_wanted(
            stream.codec_context, counted(container.demux(stream)), stream.time_base, lambda: wanted)]  # fmt: skip
    assert 0 < len(lags) < 600  # unshown B-frames were skipped
    # A second of packets (10), plus dts trailing pts and the decoder's reordering (~9 here); the clip has 600.
    assert max(lags) < 30
