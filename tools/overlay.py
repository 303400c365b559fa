"""Mask overlays on frames and the overlay video (H.264 + the clip's own audio), written atomically."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.container import OutputContainer
from av.video.reformatter import Colorspace
from PIL import Image, ImageDraw, ImageFont

from tools.errors import InputError
from tools.media import ClipInfo, iter_audio, probe_clip

__all__ = ["PALETTE", "render_overlay", "write_overlay_video"]

# Fixed, distinguishable RGB colours (Tableau 10); mask i gets PALETTE[i % len(PALETTE)].
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
)

_AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})
_BT709, _TV_RANGE = 1, 1  # AVCOL_SPC/PRI/TRC_BT709 and AVCOL_RANGE_MPEG
_VIDEO_TIME_BASE = Fraction(1, 1000)  # pts in milliseconds: frames can start at any ms (variable frame rate)


def _outline(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it (image borders count as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~interior


def render_overlay(
    image: Image.Image, masks: Sequence[np.ndarray], labels: Sequence[str], alpha: float = 0.5
) -> Image.Image:
    """Tint each bool mask (H, W) of an RGB image of size (W, H) in its palette colour (``alpha`` of the
    colour over the pixel), draw its outline in the full colour and write its label at the mask's top-left
    corner. Returns a new RGB image; no masks gives a copy. Empty masks are drawn as nothing (no label)."""
    if len(masks) != len(labels):
        raise ValueError(f"got {len(masks)} masks but {len(labels)} labels")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    base = image.convert("RGB")
    if not masks:
        return base.copy()
    width, height = base.size
    out = base.copy()
    # Blend and paste inside each mask's bounding box with PIL's C loops: masks are usually a small part of the
    # frame, and whole-frame float arithmetic cost ~70 ms per 1280x720 frame.
    boxes: list[tuple[int, int, tuple[int, int, int], str]] = []
    for i, (mask, label) in enumerate(zip(masks, labels, strict=True)):
        m = np.asarray(mask).astype(bool, copy=False)
        if m.shape != (height, width):
            raise ValueError(f"mask {i} has shape {m.shape}, the image is (H, W) = {(height, width)}")
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        if not len(rows):
            continue
        x0, y0 = int(cols[0]), int(rows[0])
        inside = m[y0 : rows[-1] + 1, x0 : cols[-1] + 1]
        colour = PALETTE[i % len(PALETTE)]
        region = out.crop((x0, y0, x0 + inside.shape[1], y0 + inside.shape[0]))
        tinted = Image.blend(region, Image.new("RGB", region.size, colour), alpha)
        out.paste(tinted, (x0, y0), Image.fromarray(inside))
        out.paste(colour, (x0, y0, x0 + inside.shape[1], y0 + inside.shape[0]), Image.fromarray(_outline(inside)))
        boxes.append((x0, y0, colour, str(label)))
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for x, y, colour, label in boxes:
        if not label:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        tw, th = right - left + 4, bottom - top + 4
        # Keep the tag inside the image even for masks touching the right or bottom edge.
        x0, y0 = max(0, min(x, width - tw)), max(0, min(y, height - th))
        draw.rectangle((x0, y0, x0 + tw - 1, y0 + th - 1), fill=colour)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        draw.text(
            (x0 + 2 - left, y0 + 2 - top), label, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255), font=font
        )
    return out


def _even(image: Image.Image) -> Image.Image:
    """Pad an odd width/height by repeating the last column/row (yuv420p needs even sizes)."""
    w, h = image.size
    if w % 2 == 0 and h % 2 == 0:
        return image
    arr = np.asarray(image)
    arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return Image.fromarray(arr, "RGB")


class _AudioTrack:
    """Re-encodes a clip's audio to AAC in step with the video, cut at the video's duration."""

    def __init__(self, container: OutputContainer, source: ClipInfo, duration_s: float) -> None:
        rate = source.audio_sample_rate or 48000
        self.rate = rate if rate in _AAC_RATES else 48000
        self.channels = 1 if (source.audio_channels or 1) == 1 else 2
        self.stream = container.add_stream("aac", rate=self.rate, layout="mono" if self.channels == 1 else "stereo")
        self.stream.time_base = Fraction(1, self.rate)
        self._container = container
        self._blocks = iter_audio(source.path, self.rate, channels=self.channels)
        self._limit = round(duration_s * self.rate)
        self._written = 0

    def write_until(self, t_s: float) -> None:
        """Encode source audio up to ``t_s`` seconds (or to the end of the video/source, whichever first)."""
        target = self._limit if math.isinf(t_s) else min(self._limit, round(t_s * self.rate))
        while self._written < target:
            block = next(self._blocks, None)
            if block is None:
                self._limit = self._written
                return
            block = np.ascontiguousarray(block[:, : self._limit - self._written], dtype=np.float32)
            if block.shape[1] == 0:
                continue
            frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono" if self.channels == 1 else "stereo")
            frame.sample_rate = self.rate
            frame.pts = self._written
            frame.time_base = Fraction(1, self.rate)
            self._written += block.shape[1]
            for packet in self.stream.encode(frame):
                self._container.mux(packet)

    def finish(self) -> None:
        self.write_until(math.inf)
        for packet in self.stream.encode(None):
            self._container.mux(packet)


class _AudioCopy:
    """Copies a clip's AAC packets as they are (no decoding, no re-encoding: the same audio, bit for bit), in step
    with the video. Timestamps keep the audio's offset to the video's start; the packet that crosses the video's
    end has its duration cut there, so the track (and a decoder honouring it) stops with the video."""

    def __init__(self, container: OutputContainer, source: ClipInfo, duration_s: float) -> None:
        self._input = av.open(source.path)
        audio = self._input.streams.audio[0]
        video = self._input.streams.video[0]
        self.stream = container.add_stream_from_template(audio)
        self._container = container
        self._tb = audio.time_base
        # Ticks of the audio time base: times in the copy count from the video's first frame, as in the source.
        video_start = float(video.start_time * video.time_base) if video.start_time is not None else 0.0
        self._shift = round(video_start / self._tb)
        self._limit = round(duration_s / self._tb)
        self._packets = (p for p in self._input.demux(audio) if p.pts is not None and p.dts is not None)
        self._held: av.Packet | None = None

    def write_until(self, t_s: float) -> None:
        """Copy the packets that start before ``t_s`` seconds (and before the video's end)."""
        target = self._limit if math.isinf(t_s) else min(self._limit, round(t_s / self._tb))
        while (packet := self._held or next(self._packets, None)) is not None:
            start = packet.pts - self._shift
            if start >= self._limit:
                self._packets = iter(())
                self._held = None
                return
            if start >= target:
                self._held = packet
                return
            self._held = None
            packet.pts, packet.dts = start, packet.dts - self._shift
            packet.duration = min(packet.duration or self._limit - start, self._limit - start)
            packet.stream = self.stream
            self._container.mux(packet)

    def finish(self) -> None:
        self.write_until(math.inf)

    def __enter__(self) -> _AudioCopy:
        return self

    def __exit__(self, *exc: object) -> None:
        self._input.close()


class _VideoTrack:
    """Encodes (start_ms, image) frames as variable-frame-rate H.264 with exact per-frame durations."""

    def __init__(self, container: OutputContainer, size: tuple[int, int]) -> None:
        self.size = size
        # No B-frames: with variable frame timing x264's reordered dts make the mp4 durations wrong.
        self.stream = container.add_stream("libx264", options={"crf": "20", "preset": "veryfast", "bf": "0"})
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        # Tag BT.709 (and convert with it): untagged, players guess BT.601 for SD and BT.709 for HD.
        ctx = self.stream.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = _BT709
        ctx.color_range = _TV_RANGE
        self.stream.time_base = _VIDEO_TIME_BASE
        self.stream.codec_context.time_base = _VIDEO_TIME_BASE
        self._container = container
        self._durations: dict[int, int] = {}

    def _mux(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            # mp4 otherwise guesses the last frame's duration, and with it the video's length.
            packet.duration = self._durations.pop(packet.pts, 0)
            self._container.mux(packet)

    def encode(self, image: Image.Image, start_ms: int, duration_ms: int) -> None:
        frame = av.VideoFrame.from_image(image).reformat(format="yuv420p", dst_colorspace=Colorspace.ITU709)
        frame.colorspace = frame.color_primaries = frame.color_trc = _BT709
        frame.color_range = _TV_RANGE
        frame.pts = start_ms
        frame.time_base = _VIDEO_TIME_BASE
        self._durations[start_ms] = duration_ms
        self._mux(self.stream.encode(frame))

    def finish(self) -> None:
        self._mux(self.stream.encode(None))


def _encode(
    tmp: Path, frames: Iterable[tuple[float, Image.Image]], duration_s: float, audio_source: str | Path | None
) -> None:
    end_ms = round(duration_s * 1000)
    source = probe_clip(audio_source) if audio_source is not None else None
    with (
        av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container,
        contextlib.ExitStack() as cleanup,
    ):
        audio: _AudioTrack | _AudioCopy | None = None
        video: _VideoTrack | None = None
        pending: tuple[int, Image.Image] | None = None  # shown from its start until the next frame's start

        def flush(until_ms: int) -> None:
            nonlocal video, audio
            assert pending is not None
            start_ms, image = pending
            if video is None:
                # Streams are added once the first image gives the size; video first, as players expect.
                video = _VideoTrack(container, image.size)
                if source is not None and source.has_audio:
                    # AAC (nearly every mp4) is copied as it is; other codecs are re-encoded to AAC for mp4.
                    if source.audio_codec == "aac":
                        audio = cleanup.enter_context(_AudioCopy(container, source, duration_s))
                    else:
                        audio = _AudioTrack(container, source, duration_s)
            elif image.size != video.size:
                (w, h), (w0, h0) = image.size, video.size
                raise ValueError(
                    f"overlay frames must share one size: the one at {start_ms / 1000:.3f} s is {w}x{h} "
                    f"(padded to even), the first was {w0}x{h0}"
                )
            if audio is not None:
                audio.write_until(until_ms / 1000)
            video.encode(image, start_ms, until_ms - start_ms)

        for start_s, image in frames:
            if not math.isfinite(start_s):
                raise ValueError(f"overlay frame start must be finite, got {start_s}")
            start_ms = 0 if pending is None else round(start_s * 1000)  # the first frame covers from 0
            if pending is not None and start_ms < pending[0]:
                raise ValueError(f"overlay frame starts must not decrease: {start_s} s after {pending[0]} ms")
            if start_ms >= end_ms:
                continue  # starts at or after the end: never on screen
            rgb = _even(image.convert("RGB"))
            if pending is not None and start_ms > pending[0]:
                flush(start_ms)
            pending = (start_ms, rgb)  # an equal start replaces the frame before it
        if pending is None:
            raise ValueError("write_overlay_video needs at least one frame starting before duration_s")
        flush(end_ms)
        assert video is not None
        video.finish()
        if audio is not None:
            audio.finish()


def write_overlay_video(
    out_path: str | Path,
    frames: Iterable[tuple[float, Image.Image]],
    duration_s: float,
    audio_source: str | Path | None,
) -> None:
    """Encode an H.264 (yuv420p, no B-frames, faststart) mp4 where each (start_s, image) is on screen from
    start_s (seconds) until the next frame's start, the last until ``duration_s``; the first frame is shown
    from 0. Frames are consumed one at a time. Starts must not decrease; an equal start replaces the previous
    frame; frames starting at or after ``duration_s`` are skipped. All images must share one size (odd sizes
    are padded to even by repeating the edge). When ``audio_source`` has an audio stream, its audio (aligned
    to its video start) is muxed in sync and cut at ``duration_s``: AAC packets are copied unchanged, other codecs
    are re-encoded to AAC; otherwise the mp4 is video only.

    The file appears atomically: it is written as ``.<name>.partial`` in the same folder and renamed onto
    ``out_path``; on any error the partial file is removed and the error re-raised.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s}")
    out = Path(out_path)
    if not out.parent.is_dir():
        raise InputError(f"{out}: output folder {out.parent} does not exist")
    tmp = out.with_name(f".{out.name}.partial")
    try:
        _encode(tmp, frames, duration_s, audio_source)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
