"""Clip probing and decoding with PyAV: probe once, decode only the chosen frames, decode audio once.

Time zero of every timestamp here is the start of the clip's video stream (its ``start_time``, normally 0 for
mp4), so frame times, audio sample indices and overlay times all share one clock.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image

from tools.errors import InputError
from tools.packet_skipping import decode_wanted

__all__ = [
    "ClipInfo",
    "DecodedFrame",
    "audio_rms_dbfs",
    "decode_audio",
    "decode_frames",
    "is_silent",
    "iter_audio",
    "probe_clip",
]

# FFmpeg renders any bytes as "text art" video with these demuxers; such a file is not a clip.
_TEXT_ART_FORMATS = frozenset({"tty", "bin", "ansi", "adf", "idf", "xbin"})
# A broken stream can yield packets forever without a frame: bound the probe's search for the first frame.
_PROBE_MAX_PACKETS = 600
# Frame times computed as index / fps differ from pts * time_base by float rounding only.
_EPS_S = 1e-6
# Without a keyframe index, seek only for jumps longer than this; shorter ones decode forward.
_BLIND_SEEK_GAP_S = 2.0
# Earlier and earlier seek targets (seconds before the wanted time) when a seek lands after it.
_SEEK_BACKOFF_S = (0.0, 1.0, 4.0)
# Containers whose packets carry presentation times, which frame skipping decides on (AVI, for one, stores a
# guess that B-frames make wrong): elsewhere every frame is decoded.
_PRESENTATION_PTS_FORMATS = frozenset({"mov", "mp4", "matroska", "webm", "mpegts"})

PathLike = str | Path


@dataclass(frozen=True)
class ClipInfo:
    """What one probe of a clip found.

    width/height are the DISPLAY size in pixels (after rotation). rotation_deg is the clockwise rotation, in
    degrees (0/90/180/270), that turns decoded pictures upright (the legacy ``rotate`` tag; FFmpeg's display
    matrix stores the opposite, counter-clockwise angle). fps is the average frame rate (frames per second),
    n_frames the container's frame count or duration*fps when it has none. duration_s is seconds of video.
    video_codec / audio_codec are FFmpeg decoder names ("h264", "aac"); audio_codec is None without audio.
    """

    path: str
    duration_s: float
    width: int
    height: int
    rotation_deg: int
    fps: float
    n_frames: int
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None
    video_codec: str
    audio_codec: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of the fields."""
        return asdict(self)


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame: ``index`` is its position in the requested timestamps, ``requested_s`` the time asked
    for, ``pts_s`` the frame's own presentation time (seconds from the video start) and ``image`` an RGB
    PIL image of the display size (or smaller with ``max_side``)."""

    index: int
    requested_s: float
    pts_s: float
    image: Image.Image


# ----------------------------------------------------------------------------------------------- opening files


def _check_path(path: PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: is a directory, not a video file")
    if not p.is_file():
        raise InputError(f"{p}: is not a regular file")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty (0 bytes)")
    return p


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return " ".join(str(text).split())


def _mp4_top_level_boxes(p: Path, limit: int = 64) -> list[bytes]:
    """Types of the top-level ISO-BMFF boxes, read from their headers only (stops at the first bad one)."""
    boxes: list[bytes] = []
    size_total = p.stat().st_size
    with p.open("rb") as fh:
        offset = 0
        while offset + 8 <= size_total and len(boxes) < limit:
            fh.seek(offset)
            header = fh.read(16)
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8]
            if size == 1 and len(header) == 16:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            if size < 8 or not kind.isalnum():
                break
            boxes.append(kind)
            offset += size
    return boxes


def _describe_open_failure(p: Path, err: BaseException, kind: str) -> str:
    try:
        boxes = _mp4_top_level_boxes(p)
    except OSError:
        boxes = []
    if boxes[:1] == [b"ftyp"]:
        if b"moov" not in boxes:
            return "truncated or unfinished MP4 (moov atom not found)"
        return f"corrupt MP4 file ({_reason(err)})"
    return f"not a readable {kind} file ({_reason(err)})"


def _open_input(p: Path, kind: str = "video") -> InputContainer:
    """The file opened for reading; InputError naming what it should have been (`kind`: video, audio) otherwise."""
    try:
        container = av.open(str(p), mode="r")
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{p}: {_describe_open_failure(p, err, kind)}") from None
    if container.format.name in _TEXT_ART_FORMATS:
        container.close()
        raise InputError(f"{p}: no {kind} in it (FFmpeg can only read it as text art)")
    return container


def _video_stream(p: Path, container: InputContainer) -> VideoStream:
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise InputError(f"{p}: has no video stream (streams found: {kinds})")
    return container.streams.video[0]


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _rotation_cw(frame: VideoFrame) -> int:
    """Clockwise display rotation of a decoded frame, snapped to a multiple of 90 degrees."""
    ccw = frame.rotation  # from the display matrix side data, counter-clockwise like FFmpeg's
    return round(-ccw / 90.0) * 90 % 360


# ------------------------------------------------------------------------------------------------------ probe


def probe_clip(path: PathLike) -> ClipInfo:
    """Open the clip once and report its facts; decodes only the first video frame (and, when the container
    states no duration, demuxes the tail to find the last timestamp).

    Raises InputError (one line naming the path) for a missing path, a directory, an empty, truncated,
    corrupt or non-media file, a file without a video stream, and a clip with no decodable frame or zero
    duration.
    """
    p = _check_path(path)
    try:
        with _open_input(p) as container:
            return _probe_open(p, container)
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{p}: unreadable video ({_reason(err)})") from None


def _first_frame(p: Path, container: InputContainer, stream: VideoStream) -> VideoFrame:
    last_error: BaseException | None = None
    for n_packets, packet in enumerate(container.demux(stream)):
        if n_packets > _PROBE_MAX_PACKETS:
            break
        try:
            frames = stream.decode(packet)
        except av.FFmpegError as err:  # a damaged packet: the next keyframe may still decode
            last_error = err
            continue
        if frames:
            return frames[0]
    detail = f" ({_reason(last_error)})" if last_error is not None else ""
    raise InputError(f"{p}: no decodable video frame{detail}")


def _probe_open(p: Path, container: InputContainer) -> ClipInfo:
    stream = _video_stream(p, container)
    tb = stream.time_base
    first = _first_frame(p, container, stream)
    rotation = _rotation_cw(first)
    width, height = first.width, first.height
    if rotation in (90, 270):
        width, height = height, width

    start_s = _seconds(stream.start_time, tb)
    if start_s is None:
        start_s = first.time or 0.0
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 0.0

    duration_s = _seconds(stream.duration, tb)
    if not duration_s and container.duration:
        duration_s = container.duration / av.time_base
    if not duration_s:
        duration_s = _duration_from_packets(p, container, stream, start_s, fps)
    if duration_s is None or not math.isfinite(duration_s) or duration_s <= 0:
        raise InputError(f"{p}: video has zero or unknown duration")

    if fps <= 0:
        fps = stream.frames / duration_s if stream.frames else 0.0
    if fps <= 0:
        raise InputError(f"{p}: video frame rate is unknown")
    n_frames = stream.frames if stream.frames > 0 else max(1, round(duration_s * fps))

    audio_rate: int | None = None
    audio_channels: int | None = None
    audio_codec: str | None = None
    if container.streams.audio:
        actx = container.streams.audio[0].codec_context
        audio_rate = int(actx.sample_rate) or None
        audio_channels = int(actx.channels) or None
        audio_codec = actx.name

    return ClipInfo(
        path=str(p),
        duration_s=float(duration_s),
        width=int(width),
        height=int(height),
        rotation_deg=rotation,
        fps=fps,
        n_frames=int(n_frames),
        has_audio=bool(container.streams.audio),
        audio_sample_rate=audio_rate,
        audio_channels=audio_channels,
        video_codec=stream.codec_context.name,
        audio_codec=audio_codec,
    )


def _duration_from_packets(
    p: Path, container: InputContainer, stream: VideoStream, start_s: float, fps: float
) -> float | None:
    """End of the last packet minus the start, demuxing (not decoding) from the last keyframe onward."""
    tb = stream.time_base
    if tb is None:
        return None
    # Not seekable: demux on from where the first frame left off.
    with contextlib.suppress(av.FFmpegError):
        container.seek(2**62, stream=stream, backward=True)
    end_s: float | None = None
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        step = packet.duration * tb if packet.duration else (1.0 / fps if fps > 0 else 0.0)
        end = float(packet.pts * tb + step)
        end_s = end if end_s is None else max(end_s, end)
    if end_s is not None:
        return end_s - start_s
    if fps <= 0:
        return None
    # Raw streams (e.g. Annex-B .h264) carry no timestamps and may not seek: count packets in a fresh pass.
    with av.open(str(p), mode="r") as again:
        count = sum(1 for packet in again.demux(again.streams.video[0]) if packet.size > 0)
    return count / fps if count else None


# ----------------------------------------------------------------------------------------------------- frames


class _FrameCursor:
    """Walks one video stream forward, seeking only when a keyframe lies between the decoder's position and
    the next wanted time. Holds at most two decoded frames: the last one at or before the latest target and
    one lookahead frame after it (needed to know that the first one is the last at or before). `times` are all
    the times (seconds from the video start) it will be asked for: the decoder may skip the non-reference frames
    that none of them shows (with `skip_unshown`)."""

    def __init__(
        self, p: Path, container: InputContainer, stream: VideoStream, times: Sequence[float], skip_unshown: bool
    ) -> None:
        self._p = p
        self._container = container
        self._stream = stream
        self._tb = stream.time_base or Fraction(1, 90000)
        self._wanted: list[float] | None = None  # the times on the stream's clock, once its first frame is known
        self._frames = self._decode()
        self._cur: tuple[VideoFrame, float] | None = None
        self._next: tuple[VideoFrame, float] | None = None
        self._last_time: float | None = None
        self.seeks = 0  # counters for tests and traces
        self.decoded = 0
        rate = stream.average_rate or stream.guessed_rate
        self._step = 1.0 / float(rate) if rate else 0.04
        self._next = self._pull()
        if self._next is None:
            raise InputError(f"{p}: no decodable video frame")
        self.first_s = self._next[1]
        start = _seconds(stream.start_time, stream.time_base)
        self.start_s = self.first_s if start is None else start
        self._keyframes = self._keyframe_times(self._next[0])
        # A time before the first frame shows the first frame: wanting its time keeps it decoded.
        if skip_unshown and not _PRESENTATION_PTS_FORMATS.isdisjoint(container.format.name.split(",")):
            self._wanted = sorted(max(self.start_s + t, self.first_s) for t in times)

    def _decode(self) -> Iterator[VideoFrame]:
        """Frames from the decoder's position on; those no wanted time shows may be skipped."""
        return decode_wanted(
            self._stream.codec_context, self._container.demux(self._stream), self._tb, lambda: self._wanted
        )

    def _keyframe_times(self, first: VideoFrame) -> list[float]:
        """Keyframe presentation times from the demuxer's index (sorted; empty when it has none).

        mp4 indexes keyframes by dts, which trails pts by the B-frame delay; the first entry's offset from
        the first frame's pts corrects that."""
        entries = self._stream.index_entries
        if len(entries) == 0 or first.pts is None:
            return []
        offset = first.pts - entries[0].timestamp
        return sorted(float((e.timestamp + offset) * self._tb) for e in entries if e.is_keyframe)

    def _pull(self) -> tuple[VideoFrame, float] | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        self.decoded += 1
        if frame.pts is not None:
            t = float(frame.pts * self._tb)
        else:
            t = 0.0 if self._last_time is None else self._last_time + self._step
        self._last_time = t
        return frame, t

    def _position(self) -> float | None:
        held = self._next or self._cur
        return None if held is None else held[1]

    def _should_seek(self, target: float) -> bool:
        if self._next is not None and self._next[1] > target + _EPS_S:
            return False  # the lookahead already proves which frame is on screen
        position = self._position()
        if position is None:
            return False
        if self._keyframes:
            i = bisect.bisect_right(self._keyframes, target + _EPS_S) - 1
            return i >= 0 and self._keyframes[i] > position + _EPS_S
        return target - position > _BLIND_SEEK_GAP_S

    def _seek(self, target: float) -> None:
        for back in (*_SEEK_BACKOFF_S, math.inf):
            when = self.start_s - 1.0 if math.isinf(back) else target - back
            self._container.seek(math.floor(when / self._tb), stream=self._stream, backward=True)
            self.seeks += 1
            self._frames = self._decode()
            self._cur, self._last_time = None, None
            self._next = self._pull()
            if self._next is not None and (self._next[1] <= target + _EPS_S or self._next[1] <= self.first_s + _EPS_S):
                return
        if self._next is None:
            raise InputError(f"{self._p}: no decodable video frame after seeking to {target:.3f} s")

    def _advance(self, target: float) -> None:
        while True:
            if self._next is None:
                self._next = self._pull()
                if self._next is None:
                    return  # end of stream: the last frame stays on screen
            if self._next[1] > target + _EPS_S:
                return
            self._cur, self._next = self._next, None

    def frame_at(self, t: float) -> tuple[VideoFrame, float]:
        """The last frame whose pts <= t (seconds from the video start), or the first frame when t precedes
        it; returns the frame and its pts in seconds from the video start."""
        target = self.start_s + t
        if self._should_seek(target):
            self._seek(target)
        self._advance(target)
        held = self._cur or self._next
        if held is None:
            raise InputError(f"{self._p}: no decodable video frame at {t:.3f} s")
        return held[0], held[1] - self.start_s


def _to_image(frame: VideoFrame, max_side: int | None) -> Image.Image:
    rotation = _rotation_cw(frame)
    swap = rotation in (90, 270)
    disp_w, disp_h = (frame.height, frame.width) if swap else (frame.width, frame.height)
    if max_side is not None and max(disp_w, disp_h) > max_side:
        scale = max_side / max(disp_w, disp_h)
        out_w, out_h = max(1, round(disp_w * scale)), max(1, round(disp_h * scale))
        coded_w, coded_h = (out_h, out_w) if swap else (out_w, out_h)
        # Scaling inside swscale avoids ever materialising a full-size RGB copy of a 4K frame.
        image = frame.reformat(width=coded_w, height=coded_h, format="rgb24", interpolation="BILINEAR").to_image()
    else:
        image = frame.to_image()
    if rotation == 90:
        image = image.transpose(Image.Transpose.ROTATE_270)  # PIL rotates counter-clockwise
    elif rotation == 180:
        image = image.transpose(Image.Transpose.ROTATE_180)
    elif rotation == 270:
        image = image.transpose(Image.Transpose.ROTATE_90)
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_frames(
    path: PathLike, timestamps_s: Sequence[float], max_side: int | None = None, *, skip_unshown: bool = True
) -> Iterator[DecodedFrame]:
    """Yield one DecodedFrame per timestamp (seconds from the video start), in order, streaming.

    Each is the frame on screen at that time: the last frame whose pts <= timestamp, or the first frame for
    a timestamp before it (and the last frame for one past the end). Images are RGB at the display size
    (rotation applied); with ``max_side`` a larger image is downscaled bilinearly so its longer side is
    ``max_side`` pixels, keeping the aspect ratio. Only one image exists at a time unless the caller keeps
    them. Arguments are checked at call time (ValueError for unsorted or non-finite timestamps or a bad
    ``max_side``; InputError for a missing path); the file is opened on the first ``next()``, where a bad
    file raises InputError. With ``skip_unshown`` (the default) the decoder skips the non-reference frames that no
    timestamp shows, in containers whose packets carry presentation times (mp4/mov, Matroska/WebM, MPEG-TS); the
    frames yielded are the same either way.
    """
    times = [float(t) for t in timestamps_s]
    if not all(math.isfinite(t) for t in times):
        raise ValueError("timestamps_s must be finite numbers")
    if any(b < a for a, b in itertools.pairwise(times)):
        raise ValueError("timestamps_s must be sorted in ascending order")
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    p = _check_path(path)
    return _decode_frames(p, times, max_side, skip_unshown)


def _decode_frames(p: Path, times: list[float], max_side: int | None, skip_unshown: bool) -> Iterator[DecodedFrame]:
    if not times:
        return
    try:
        container = _open_input(p)
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{p}: unreadable video ({_reason(err)})") from None
    with container:
        try:
            stream = _video_stream(p, container)
            stream.thread_type = "AUTO"
            cursor = _FrameCursor(p, container, stream, times, skip_unshown)
        except (av.FFmpegError, OSError) as err:
            raise InputError(f"{p}: unreadable video ({_reason(err)})") from None
        for index, t in enumerate(times):
            try:
                frame, pts_s = cursor.frame_at(t)
                image = _to_image(frame, max_side)
            except (av.FFmpegError, OSError) as err:
                raise InputError(f"{p}: decoding failed near {t:.3f} s ({_reason(err)})") from None
            del frame
            yield DecodedFrame(index=index, requested_s=t, pts_s=pts_s, image=image)
            del image


# ------------------------------------------------------------------------------------------------------ audio


def _check_rates(sample_rates: Sequence[int]) -> list[int]:
    rates: list[int] = []
    for rate in sample_rates:
        if isinstance(rate, bool) or int(rate) != rate or rate <= 0:
            raise ValueError(f"sample rates must be positive integers (Hz), got {rate!r}")
        if int(rate) not in rates:
            rates.append(int(rate))
    return rates


def _iter_audio_multi(
    p: Path, container: InputContainer, rates: list[int], channels: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the first audio stream once and yield (rate, block) pairs, block float32 (channels, n) at that
    rate, aligned so that sample 0 is time 0 of the video stream (zeros prepended or samples dropped when the
    audio starts later or earlier). Nothing is yielded for a clip without audio."""
    if not container.streams.audio:
        return
    astream = container.streams.audio[0]
    offset_s = 0.0
    a_start = _seconds(astream.start_time, astream.time_base)
    if container.streams.video:
        vstream = container.streams.video[0]
        v_start = _seconds(vstream.start_time, vstream.time_base)
        if a_start is not None and v_start is not None:
            offset_s = a_start - v_start
    skip = {r: max(0, round(-offset_s * r)) for r in rates}
    # AAC decoders return the encoder's padding of the last frame too; the stream's stated duration ends it.
    a_dur = _seconds(astream.duration, astream.time_base)
    limit = {r: round((offset_s + a_dur) * r) if a_dur else None for r in rates}
    emitted = dict.fromkeys(rates, 0)
    for r in rates:
        lead = round(offset_s * r)
        if lead > 0:
            emitted[r] = lead
            yield r, np.zeros((channels, lead), np.float32)

    resamplers: dict[int, av.AudioResampler] = {}
    src_channels = 0

    def emit(rate: int, frames: list[Any]) -> Iterator[tuple[int, np.ndarray]]:
        for out in frames:
            block = out.to_ndarray().astype(np.float32, copy=False)
            if channels == 1 and block.shape[0] > 1:
                block = block.mean(axis=0, keepdims=True, dtype=np.float32)
            elif channels == 2 and block.shape[0] == 1:
                block = np.repeat(block, 2, axis=0)
            if skip[rate]:
                drop = min(skip[rate], block.shape[1])
                skip[rate] -= drop
                block = block[:, drop:]
            cap = limit[rate]
            if cap is not None:
                block = block[:, : max(0, cap - emitted[rate])]
            if block.shape[1]:
                emitted[rate] += block.shape[1]
                yield rate, np.clip(block, -1.0, 1.0)

    for frame in container.decode(astream):
        if not resamplers:
            src_channels = frame.layout.nb_channels
            # Downmix by averaging (mono) or let swresample fold surround into stereo first.
            layout = "mono" if src_channels == 1 else "stereo"
            resamplers = {r: av.AudioResampler(format="fltp", layout=layout, rate=r) for r in rates}
        for rate, resampler in resamplers.items():
            yield from emit(rate, resampler.resample(frame))
    for rate, resampler in resamplers.items():
        yield from emit(rate, resampler.resample(None))


def iter_audio(path: PathLike, sample_rate: int, channels: int = 1) -> Iterator[np.ndarray]:
    """Stream the clip's audio as float32 blocks of shape (channels, n) at ``sample_rate`` Hz, values in
    [-1, 1], sample 0 at time 0 of the video. ``channels`` is 1 (mean of the source channels) or 2. Yields
    nothing for a clip without audio. Bad files raise InputError on the first ``next()``."""
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    (rate,) = _check_rates([sample_rate])
    p = _check_path(path)
    return _iter_audio(p, rate, channels)


def _iter_audio(p: Path, rate: int, channels: int) -> Iterator[np.ndarray]:
    try:
        container = _open_input(p, "audio")
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{p}: unreadable media ({_reason(err)})") from None
    with container:
        blocks = _iter_audio_multi(p, container, [rate], channels)
        while True:
            try:
                item = next(blocks, None)
            except (av.FFmpegError, OSError) as err:
                raise InputError(f"{p}: audio decoding failed ({_reason(err)})") from None
            if item is None:
                return
            yield item[1]


def decode_audio(path: PathLike, sample_rates: Sequence[int]) -> dict[int, np.ndarray]:
    """Decode the audio stream once; return {rate: mono float32 samples in [-1, 1], shape (n,)} for every
    requested rate in Hz, resampled in the same pass. Sample 0 is time 0 of the video stream. A clip
    without an audio stream gives empty arrays (valid, not an error); bad files raise InputError."""
    rates = _check_rates(sample_rates)
    p = _check_path(path)
    chunks: dict[int, list[np.ndarray]] = {r: [] for r in rates}
    try:
        with _open_input(p, "audio") as container:
            for rate, block in _iter_audio_multi(p, container, rates, channels=1):
                chunks[rate].append(block[0])
    except (av.FFmpegError, OSError) as err:
        raise InputError(f"{p}: audio decoding failed ({_reason(err)})") from None
    return {
        r: np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)
        for r, parts in chunks.items()
    }


def audio_rms_dbfs(samples: np.ndarray) -> float:
    """Root-mean-square level in dB relative to full scale (1.0); -inf for empty or all-zero samples."""
    x = np.asarray(samples, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    rms = math.sqrt(float(np.mean(x * x)))
    return 20.0 * math.log10(rms) if rms > 0 else -math.inf


def is_silent(samples: np.ndarray, threshold_dbfs: float = -60.0) -> bool:
    """True when the RMS level is below ``threshold_dbfs`` (empty audio is silent)."""
    return audio_rms_dbfs(samples) < threshold_dbfs
