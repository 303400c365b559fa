"""Mask overlays and the overlay video (tools.overlay)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.clipfactory import frame_colour, frame_number_of, write_test_clip
from tools.errors import InputError
from tools.media import decode_audio, probe_clip
from tools.overlay import PALETTE, render_overlay, write_overlay_video

# ---------------------------------------------------------------------------------------------------- render


def _grey(size: tuple[int, int] = (80, 60), value: int = 100) -> Image.Image:
    return Image.new("RGB", size, (value, value, value))


def _box(shape: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top:bottom, left:right] = True
    return mask


def test_no_masks_returns_a_copy() -> None:
    image = _grey()
    out = render_overlay(image, [], [])
    assert out is not image and out.tobytes() == image.tobytes()


def test_masks_are_tinted_outlined_and_labelled() -> None:
    image = _grey()
    first = _box((60, 80), 30, 10, 55, 35)
    second = _box((60, 80), 5, 45, 40, 75)
    out = np.asarray(render_overlay(image, [first, second], ["dog", "piano"], alpha=0.5)).astype(int)
    for mask, colour, (y, x) in ((first, PALETTE[0], (50, 30)), (second, PALETTE[1], (35, 70))):
        expected = [round(0.5 * 100 + 0.5 * c) for c in colour]
        assert np.abs(out[y, x] - expected).max() <= 1  # tinted interior
        assert tuple(out[y, x - (x - np.nonzero(mask[y])[0].max())]) == colour  # right-hand outline
    assert tuple(out[2, 2]) == (100, 100, 100)  # outside every mask: untouched
    # The label tag (filled with the mask's colour) sits at the mask's top-left corner.
    tag = out[30:36, 10:20]
    assert (np.abs(tag - np.asarray(PALETTE[0])).sum(axis=-1) == 0).mean() > 0.3
    assert not (tag == tag[0, 0]).all()  # and text is written on it


def test_alpha_and_empty_masks() -> None:
    image = _grey()
    mask = _box((60, 80), 10, 10, 50, 70)
    opaque = np.asarray(render_overlay(image, [mask], [""], alpha=1.0))
    assert tuple(opaque[30, 40]) == PALETTE[0]
    clear = np.asarray(render_overlay(image, [mask], [""], alpha=0.0))
    assert tuple(clear[30, 40]) == (100, 100, 100)
    empty = render_overlay(image, [np.zeros((60, 80), bool)], ["nothing"])
    assert empty.tobytes() == image.tobytes()


def test_render_rejects_mismatches() -> None:
    image = _grey()
    with pytest.raises(ValueError, match="labels"):
        render_overlay(image, [np.zeros((60, 80), bool)], [])
    with pytest.raises(ValueError, match="shape"):
        render_overlay(image, [np.zeros((80, 60), bool)], ["x"])
    with pytest.raises(ValueError):
        render_overlay(image, [], [], alpha=1.5)


# ----------------------------------------------------------------------------------------------------- video


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_clip(tmp_path_factory.mktemp("src") / "source.mp4", channels=2, sample_rate=44100)


def _coded(n: int, size: tuple[int, int] = (63, 47)) -> Image.Image:
    return Image.new("RGB", size, frame_colour(n))


def _video_frames(path: Path) -> list[tuple[float, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(f.pts * stream.time_base), frame_number_of(f.to_image())) for f in container.decode(stream)]


def test_overlay_video_with_audio(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "overlay.mp4"
    starts = [0.92, 1.92, 2.92, 3.92, 4.92]
    write_overlay_video(out, ((s, _coded(i * 7)) for i, s in enumerate(starts)), 5.0, source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.mp4"]
    with av.open(str(out)) as container:
        assert [s.type for s in container.streams] == ["video", "audio"]
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and video.codec_context.pix_fmt == "yuv420p"
        assert video.codec_context.colorspace == 1  # tagged BT.709
        assert (video.width, video.height) == (64, 48)  # 63x47 padded to even
        assert audio.codec_context.name == "aac"
        assert float(video.duration * video.time_base) == pytest.approx(5.0, abs=0.01)
        assert float(audio.duration * audio.time_base) == pytest.approx(5.0, abs=0.03)
    # Each image is on screen from its start (the first from 0) until the next one's.
    assert _video_frames(out) == [(0.0, 0), (1.92, 7), (2.92, 14), (3.92, 21), (4.92, 28)]
    info = probe_clip(out)
    assert info.duration_s == pytest.approx(5.0, abs=0.01) and info.has_audio and info.audio_channels == 2
    # The audio is the source's, in sync.
    got, want = decode_audio(out, [16000])[16000], decode_audio(source, [16000])[16000]
    assert got.shape == want.shape == (80000,)
    assert np.corrcoef(got[800:79000], want[800:79000])[0, 1] > 0.99


def test_overlay_video_without_audio(tmp_path: Path) -> None:
    mute = write_test_clip(tmp_path / "mute.mp4", audio=False, seconds=2.0)
    for audio_source in (None, mute):
        out = tmp_path / "mute_overlay.mp4"
        write_overlay_video(out, [(0.0, _coded(1, (64, 48))), (0.5, _coded(2, (64, 48)))], 2.0, audio_source)
        with av.open(str(out)) as container:
            assert [s.type for s in container.streams] == ["video"]
        assert probe_clip(out).duration_s == pytest.approx(2.0, abs=0.01)
        assert _video_frames(out) == [(0.0, 1), (0.5, 2)]


def test_overlay_frame_rules(tmp_path: Path) -> None:
    out = tmp_path / "rules.mp4"
    frames = [(0.0, _coded(1)), (1.0, _coded(2)), (1.0, _coded(3)), (2.5, _coded(4)), (3.0, _coded(5))]
    write_overlay_video(out, frames, 3.0, None)
    # An equal start replaces the frame before it; a start at or after the end is never shown.
    assert _video_frames(out) == [(0.0, 1), (1.0, 3), (2.5, 4)]
    with pytest.raises(ValueError, match="decrease"):
        write_overlay_video(out, [(1.0, _coded(1)), (2.0, _coded(2)), (1.5, _coded(3))], 3.0, None)
    with pytest.raises(ValueError, match="size"):
        write_overlay_video(out, [(0.0, _coded(1)), (1.0, _coded(2, (32, 32)))], 3.0, None)
    with pytest.raises(ValueError):
        write_overlay_video(out, [], 3.0, None)
    with pytest.raises(InputError, match="no such file"):
        write_overlay_video(out, [(0.0, _coded(1))], 3.0, tmp_path / "missing.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules.mp4"]


def test_overlay_video_is_written_atomically(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "overlay.mp4"

    def failing() -> Iterator[tuple[float, Image.Image]]:
        yield 0.0, _coded(1)
        yield 1.0, _coded(2)
        raise RuntimeError("segmentation failed")

    with pytest.raises(RuntimeError, match="segmentation failed"):
        write_overlay_video(out, failing(), 5.0, source)
    assert list(tmp_path.iterdir()) == []

    out.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        write_overlay_video(out, failing(), 5.0, source)
    assert out.read_bytes() == b"previous result"  # the old file is never half-overwritten
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.mp4"]


def _audio_payloads(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def test_overlay_video_copies_aac_audio_and_cuts_it_at_the_end(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "short.mp4"
    write_overlay_video(out, [(0.0, _coded(1)), (1.0, _coded(2))], 3.0, source)
    copied, original = _audio_payloads(out), _audio_payloads(source)
    # The AAC packets are the source's own bytes (no re-encoding), up to the video's end.
    assert copied == original[: len(copied)] and len(copied) < len(original)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(3.0, abs=1e-3)
    got, want = decode_audio(out, [16000])[16000], decode_audio(source, [16000])[16000]
    assert got.shape == (48000,)
    assert np.corrcoef(got[800:47000], want[800:47000])[0, 1] > 0.99


def test_overlay_video_reencodes_other_audio_codecs_to_aac(tmp_path: Path) -> None:
    mp3 = write_test_clip(tmp_path / "mp3.mp4", audio_codec="libmp3lame", sample_rate=44100, seconds=3.0)
    out = tmp_path / "overlay.mp4"
    write_overlay_video(out, [(0.0, _coded(1)), (1.0, _coded(2))], 3.0, mp3)
    with av.open(str(out)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"
    got, want = decode_audio(out, [16000])[16000], decode_audio(mp3, [16000])[16000]
    assert got.shape == (48000,)
    assert np.corrcoef(got[800:47000], want[800:47000])[0, 1] > 0.99
