"""The run's user-facing files: per-frame mask PNGs in the AVSBench convention and the overlay video."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image

from tools.datamodel import FrameMasks, frame_number
from tools.frames import FrameRef, read_rgb
from tools.overlay import render_overlay, write_overlay_video
from tools.parallel import for_each_in_threads, map_ahead
from tools.runfiles import staged_dir, write_mask_png


def mask_file_name(stem: str, frame_index: int) -> str:
    """AVSBench naming: `<stem>_<k>.png` with k counted from 1."""
    return f"{stem}_{frame_number(frame_index)}.png"


def write_masks_folder(folder: Path, stem: str, masks: Sequence[FrameMasks]) -> list[str]:
    """Write each frame's union mask (0/255, single channel) into `folder`, replacing it as a whole; PNGs are
    encoded on worker threads (zlib runs without the GIL)."""
    with staged_dir(folder) as staging:

        def write(frame_masks: FrameMasks) -> None:
            write_mask_png(staging / mask_file_name(stem, frame_masks.frame_index), frame_masks.union())

        for_each_in_threads(write, ((m,) for m in masks))
    return [str(folder / mask_file_name(stem, m.frame_index)) for m in masks]


def overlay_frames(frames: Sequence[FrameRef], masks: Sequence[FrameMasks]) -> Iterator[tuple[float, Image.Image]]:
    """(start time s, overlay image) per frame, in order, drawn a few frames ahead on worker threads (PIL draws
    without the GIL) while the caller encodes. Frame k is shown from the previous frame's time, so with the default
    audio windows each picture is on screen while the audio it was judged by plays."""

    def draw(position: int, frame: FrameRef, frame_masks: FrameMasks) -> tuple[float, Image.Image]:
        start = 0.0 if position == 0 else frames[position - 1].timestamp_s
        labels = [f"{o.phrase} {o.box_score:.2f}" for o in frame_masks.objects]
        return start, render_overlay(read_rgb(frame.path), [o.mask for o in frame_masks.objects], labels)

    # Masks are read (decoded) here, in order; the bounded look-ahead keeps memory flat over long clips.
    yield from map_ahead(draw, ((k, f, m) for k, (f, m) in enumerate(zip(frames, masks, strict=True))))


def write_overlay(
    path: Path, frames: Sequence[FrameRef], masks: Sequence[FrameMasks], duration_s: float, audio_source: str | None
) -> None:
    """overlay.mp4: the sampled frames with coloured masks and labels, with the clip's original audio."""
    write_overlay_video(path, overlay_frames(frames, masks), duration_s, audio_source)
