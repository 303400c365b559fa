"""Tiny real media files for tests, written with PyAV.

Every video frame is a flat colour that encodes its frame number n (read it back with ``frame_number_of``):
red = 16*(n % 16) + 8, green = 16*(n // 16 % 16) + 8, blue = 16*(n // 256 % 16) + 8, which survives H.264
and yuv420p within a few levels and covers 4096 frames. A white square in the top-left corner (a quarter of
the shorter side) shows where "up-left" is, so rotation can be checked.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

_LEVEL = 16
_AAC_FRAME = 1024


def frame_colour(n: int) -> tuple[int, int, int]:
    """RGB colour of frame number n."""
    return (
        _LEVEL * (n % 16) + 8,
        _LEVEL * (n // 16 % 16) + 8,
        _LEVEL * (n // 256 % 16) + 8,
    )


def frame_number_of(image: Image.Image) -> int:
    """Frame number encoded in an image written by ``write_test_clip`` (read from its central third)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    h, w = rgb.shape[:2]
    centre = rgb[h // 3 : max(h // 3 + 1, 2 * h // 3), w // 3 : max(w // 3 + 1, 2 * w // 3)]
    r, g, b = (round((float(np.median(centre[..., c])) - 8) / _LEVEL) for c in range(3))
    return max(0, r) + 16 * max(0, g) + 256 * max(0, b)


def marker_corner(image: Image.Image) -> str:
    """Which corner holds the white marker: 'tl', 'tr', 'bl' or 'br'."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    h, w = grey.shape
    ch, cw = max(1, h // 10), max(1, w // 10)
    corners = {
        "tl": grey[:ch, :cw],
        "tr": grey[:ch, w - cw :],
        "bl": grey[h - ch :, :cw],
        "br": grey[h - ch :, w - cw :],
    }
    return max(corners, key=lambda k: float(corners[k].mean()))


def frame_array(n: int, width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[...] = frame_colour(n)
    side = max(2, min(width, height) // 4)
    img[:side, :side] = 255
    return img


def _frame_times(seconds: float, fps: float, irregular: bool) -> tuple[Fraction, list[int]]:
    """(time base, pts of every frame): 1/fps ticks for regular clips, milliseconds for irregular ones."""
    if not irregular:
        rate = Fraction(fps).limit_denominator(1001)
        return 1 / rate, list(range(max(1, round(seconds * fps))))
    # Alternate short and long gaps (0.5x to 2x the nominal interval).
    step = 1000.0 / fps
    pattern = [0.5, 1.5, 0.5, 1.5, 2.0, 0.5, 1.0, 0.5]
    times: list[int] = []
    t, i = 0.0, 0
    while t < seconds * 1000 - 1e-6:
        times.append(round(t))
        t += step * pattern[i % len(pattern)]
        i += 1
    return Fraction(1, 1000), times


def _write_audio(
    container: av.container.OutputContainer,
    stream: av.audio.stream.AudioStream,
    seconds: float,
    sample_rate: int,
    channels: int,
    tone_hz: float,
    silent: bool,
) -> None:
    n = round(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    tone = np.zeros(n, np.float32) if silent else (0.5 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    layout = "mono" if channels == 1 else "stereo"
    for start in range(0, n, _AAC_FRAME):
        chunk = np.ascontiguousarray(np.repeat(tone[None, start : start + _AAC_FRAME], channels, axis=0))
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_test_clip(
    path: str | Path,
    *,
    seconds: float = 5.0,
    fps: float = 25.0,
    size: tuple[int, int] = (64, 48),
    audio: bool = True,
    sample_rate: int = 16000,
    tone_hz: float = 440.0,
    channels: int = 1,
    rotation_deg: int = 0,
    irregular: bool = False,
    silent: bool = False,
    gop: int = 12,
    audio_codec: str = "aac",
) -> Path:
    """Write an H.264 mp4 of ``seconds`` at ``fps`` with ``size`` = (width, height) coded pixels.

    Frame n is encoded as described in the module docstring. Regular clips use B-frames and a keyframe
    every ``gop`` frames (so seeks land before the wanted frame); ``irregular`` clips have uneven frame
    durations (pts in ms, no B-frames: x264's VFR dts with B-frames makes mp4 durations wrong). Odd sizes
    are written as yuv444p (x264 refuses odd sizes in 4:2:0). ``rotation_deg`` is the clockwise display
    rotation written into the display matrix. Audio is an AAC sine tone (or zeros if ``silent``).
    """
    path = Path(path)
    width, height = size
    time_base, pts = _frame_times(seconds, fps, irregular)
    options = {"crf": "10", "preset": "ultrafast" if irregular else "veryfast"}
    if irregular:
        options["bf"] = "0"
    options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
    with av.open(str(path), mode="w", format="mp4") as container:
        vstream = container.add_stream("libx264", options=options)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        vstream.time_base = time_base
        vstream.codec_context.time_base = time_base
        if rotation_deg % 360:
            vstream.set_display_rotation(-(rotation_deg % 360))  # PyAV takes the counter-clockwise angle
        astream = None
        if audio:
            layout = "mono" if channels == 1 else "stereo"
            astream = container.add_stream(audio_codec, rate=sample_rate, layout=layout)
            astream.time_base = Fraction(1, sample_rate)
        end = max(pts[-1] + 1, round(seconds / time_base))
        durations = {t: (pts[i + 1] if i + 1 < len(pts) else end) - t for i, t in enumerate(pts)}

        def mux(packets: list[av.Packet]) -> None:
            for packet in packets:
                # The muxer needs each packet's duration, or the last frame's length (and the clip's) is a guess.
                packet.duration = durations[packet.pts]
                container.mux(packet)

        for n, t in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(frame_array(n, width, height), format="rgb24")
            frame.pts = t
            frame.time_base = time_base
            mux(vstream.encode(frame))
        mux(vstream.encode(None))
        if astream is not None:
            _write_audio(container, astream, seconds, sample_rate, channels, tone_hz, silent)
    return path


def frame_times_s(path: str | Path) -> list[float]:
    """Presentation times (seconds) of every video frame of a clip, in order (decodes the whole clip)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [float(f.pts * stream.time_base) for f in container.decode(stream)]


def write_audio_only(path: str | Path, *, seconds: float = 2.0, sample_rate: int = 16000) -> Path:
    """Write an mp4 (m4a) holding only an AAC sine tone."""
    path = Path(path)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        stream.time_base = Fraction(1, sample_rate)
        _write_audio(container, stream, seconds, sample_rate, 1, 440.0, silent=False)
    return path


def corrupt_copy(src: str | Path, dst: str | Path, keep_fraction: float = 0.5) -> Path:
    """Copy the first ``keep_fraction`` of ``src``'s bytes to ``dst`` (a truncated file; for our mp4s, whose
    moov index is at the end, this loses the index)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * keep_fraction)])
    return dst
