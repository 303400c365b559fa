"""Tiny AVSBench datasets in the exact official on-disk layouts, with exactly known ground truth.

    uv run python -m evals.synthetic --out DIR --subset s4|ms3|avss --n N [--seed S]
    write_synthetic(out, "s4", n=6, seed=0) -> DIR/Single-source

Each video: a plain background of one grey level, a non-sounding distractor disc, and one rectangle per sounding
object in its class colour, moving a little each second. GT masks are exactly the rectangles (drawn with numpy, no
anti-aliasing). Audio: 16 kHz mono 16-bit wav, one sine tone per sounding object (class-specific pitch), silent in
the seconds whose GT is empty. Layouts (see evals.datasets):
    s4   -> DIR/Single-source        224x224 PNG frames, 0/255 L-mode masks (train: frame 1 only), s4_meta_data.csv
    ms3  -> DIR/Multi-sources        2 objects; odd videos are silent in second 5 (empty GT), ms3_meta_data.csv
    avss -> DIR/AVSBench_semantic    v1s / v1m (5 frames) and v2 (10 frames), JPG frames, P-mode VOC labels_rgb,
                                     L-mode labels_semantic, label2idx.json (71 keys), metadata.csv,
                                     meta_v3_unseen.csv (the test videos of v1m and v2, split "unseen")
Splits cycle test, train, val so a handful of videos already covers all three. Re-running into an existing folder
overwrites the same files; each CSV is written last through a temporary file and a rename, so it is never half
written and never lists a video whose files are not there yet.
"""

from __future__ import annotations

import colorsys
import json
import os
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from evals.datasets.avss import AVSS_COLUMNS, AVSS_DIR, LABEL2IDX, V3_CSV
from evals.datasets.categories import S4_CATEGORIES
from evals.datasets.csvio import write_table
from evals.datasets.masks import write_binary_mask, write_index_mask
from evals.datasets.ms3 import MS3_CSV, MS3_DIR
from evals.datasets.s4 import S4_CSV, S4_DIR
from tools.cli import ArgumentParser
from tools.errors import InputError, OpenAVSError
from tools.runfiles import require_folder_path
from tools.vocabulary import AVSS_CLASSES

SIZE = 224  # frame side, pixels
SAMPLE_RATE = 16_000  # Hz
SPLIT_CYCLE = ("test", "train", "val")
AVSS_LABEL_CYCLE = ("v1s", "v1m", "v2")
AVSS_FRAMES = {"v1s": 5, "v1m": 5, "v2": 10}


@dataclass(frozen=True)
class Scene:
    """One synthetic video: boxes[k][j] = (y0, y1, x0, x1) of object j in frame k, or None when it is silent."""

    background: int
    disc: tuple[int, int, int]  # centre y, centre x, radius (pixels); never part of the GT
    colours: tuple[tuple[int, int, int], ...]
    boxes: tuple[tuple[tuple[int, int, int, int] | None, ...], ...]
    pitches: tuple[float, ...]  # Hz, one per object


def class_colour(index: int) -> tuple[int, int, int]:
    """A saturated colour per class index (golden-ratio hue steps keep neighbours apart)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def make_scene(rng: np.random.Generator, class_ids: list[int], n_frames: int, silent_last: bool) -> Scene:
    """Random but exactly reproducible geometry for the given classes; `silent_last` empties the last frame."""
    boxes = []
    starts = [(int(rng.integers(10, 110)), int(rng.integers(10, 110))) for _ in class_ids]
    sizes = [(int(rng.integers(30, 80)), int(rng.integers(30, 80))) for _ in class_ids]
    step = (int(rng.integers(-4, 5)), int(rng.integers(-4, 5)))
    for k in range(n_frames):
        frame = []
        for (y, x), (h, w) in zip(starts, sizes, strict=True):
            y0 = int(np.clip(y + k * step[0], 0, SIZE - h))
            x0 = int(np.clip(x + k * step[1], 0, SIZE - w))
            frame.append((y0, y0 + h, x0, x0 + w))
        boxes.append(tuple(None if (silent_last and k == n_frames - 1) else b for b in frame))
    return Scene(
        background=int(rng.integers(30, 200)),
        disc=(int(rng.integers(40, 184)), int(rng.integers(40, 184)), int(rng.integers(12, 30))),
        colours=tuple(class_colour(c) for c in class_ids),
        boxes=tuple(boxes),
        pitches=tuple(220.0 * 2 ** ((c % 36) / 12) for c in class_ids),
    )


def render_frame(scene: Scene, k: int) -> np.ndarray:
    """(224, 224, 3) uint8 RGB frame k: background, distractor disc, then every object (silent ones too)."""
    img = np.full((SIZE, SIZE, 3), scene.background, dtype=np.uint8)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    cy, cx, r = scene.disc
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (250, 250, 250)
    # A silent object stays visible (it is just not sounding): draw it where it was on the previous frame.
    for j, colour in enumerate(scene.colours):
        box = scene.boxes[k][j] or next(
            (scene.boxes[i][j] for i in range(k, -1, -1) if scene.boxes[i][j] is not None), None
        )
        if box is not None:
            y0, y1, x0, x1 = box
            img[y0:y1, x0:x1] = colour
    return img


def object_masks(scene: Scene, k: int) -> list[np.ndarray]:
    """(224, 224) bool mask of each object in frame k (all False when it is silent)."""
    masks = []
    for box in scene.boxes[k]:
        m = np.zeros((SIZE, SIZE), dtype=bool)
        if box is not None:
            y0, y1, x0, x1 = box
            m[y0:y1, x0:x1] = True
        masks.append(m)
    return masks


def binary_mask(scene: Scene, k: int) -> np.ndarray:
    """(224, 224) bool union of the sounding objects of frame k."""
    return np.logical_or.reduce(object_masks(scene, k))


def class_mask(scene: Scene, k: int, class_ids: list[int]) -> np.ndarray:
    """(224, 224) uint8 class indices of frame k (later objects on top, as they are drawn)."""
    out = np.zeros((SIZE, SIZE), dtype=np.uint8)
    for m, c in zip(object_masks(scene, k), class_ids, strict=True):
        out[m] = c
    return out


def write_wav(path: Path, scene: Scene, seconds: int) -> None:
    """16 kHz mono 16-bit wav: each object's tone during the seconds it sounds (one second per frame)."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    chunks = []
    for s in range(seconds):
        k = min(s, len(scene.boxes) - 1)
        tones = [np.sin(2 * np.pi * f * t) for f, b in zip(scene.pitches, scene.boxes[k], strict=True) if b]
        chunk = np.sum(tones, axis=0) / max(1, len(scene.pitches)) if tones else np.zeros_like(t)
        chunks.append(chunk)
    pcm = (np.concatenate(chunks) * 0.5 * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def save_rgb(path: Path, img: np.ndarray) -> None:
    """Write an RGB frame; the format follows the suffix (PNG lossless, JPG quality 95)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        Image.fromarray(img).save(path, quality=95)
    else:
        Image.fromarray(img).save(path)


def write_s4(base: Path, n: int, seed: int) -> Path:
    """S4 layout under base/Single-source; returns that folder."""
    root = base / S4_DIR
    data = root / "s4_data"
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        split = SPLIT_CYCLE[i % 3]
        cat_index = (i + seed) % len(S4_CATEGORIES)
        category = S4_CATEGORIES[cat_index]
        name = f"syn{seed}-{i:03d}_0_5000"
        scene = make_scene(rng, [cat_index + 1], 5, silent_last=False)
        for k in range(1, 6):
            save_rgb(data / "visual_frames" / split / category / name / f"{name}_{k}.png", render_frame(scene, k - 1))
            if split != "train" or k == 1:
                write_binary_mask(
                    data / "gt_masks" / split / category / name / f"{name}_{k}.png", binary_mask(scene, k - 1)
                )
        write_wav(data / "audio_wav" / split / category / f"{name}.wav", scene, 5)
        rows.append((name, 0, category, split))
    # Column 1 (the clip start in seconds) is never read by the loaders; name and category are read by position.
    write_table(root / S4_CSV, ("name", "start_time", "category", "split"), rows)
    return root


def write_ms3(base: Path, n: int, seed: int) -> Path:
    """MS3 layout under base/Multi-sources; returns that folder."""
    root = base / MS3_DIR
    data = root / "ms3_data"
    rows = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 3])
        split = SPLIT_CYCLE[i % 3]
        name = f"syn{seed}ms3-{i:03d}_{i % 2}"
        class_ids = [int(c) for c in rng.choice(np.arange(1, len(AVSS_CLASSES) + 1), 2, replace=False)]
        scene = make_scene(rng, class_ids, 5, silent_last=i % 2 == 1)
        for k in range(1, 6):
            save_rgb(data / "visual_frames" / name / f"{name}.mp4_{k}.png", render_frame(scene, k - 1))
            write_binary_mask(data / "gt_masks" / split / name / f"{name}_{k}.png", binary_mask(scene, k - 1))
        write_wav(data / "audio_wav" / split / f"{name}.wav", scene, 5)
        rows.append((name, split))
    write_table(root / MS3_CSV, ("video_id", "split"), rows)
    return root


def write_avss(base: Path, n: int, seed: int) -> Path:
    """AVSS layout (plus label2idx.json and a V3 list) under base/AVSBench_semantic; returns that folder."""
    root = base / AVSS_DIR
    classes = ["background", *AVSS_CLASSES]
    rows, v3_rows = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 7])
        label = AVSS_LABEL_CYCLE[i % 3]
        split = SPLIT_CYCLE[(i // 3) % 3]
        n_frames = AVSS_FRAMES[label]
        n_objects = 1 if label == "v1s" else 2
        class_ids = [int(c) for c in rng.choice(np.arange(1, len(classes)), n_objects, replace=False)]
        scene = make_scene(rng, class_ids, n_frames, silent_last=label == "v2")
        vid = f"syn{seed}avss-{i:03d}"
        uid = vid if label == "v1m" else f"{vid}_0_{n_frames}000"
        folder = root / label / uid
        annotated = 1 if (label == "v1s" and split == "train") else n_frames
        for k in range(n_frames):
            save_rgb(folder / "frames" / f"{k}.jpg", render_frame(scene, k))
            if k < annotated:
                labels = class_mask(scene, k, class_ids)
                write_index_mask(folder / "labels_rgb" / f"{k}.png", labels)
                (folder / "labels_semantic").mkdir(parents=True, exist_ok=True)
                Image.fromarray(labels).save(folder / "labels_semantic" / f"{k}.png")  # L mode, class indices
        write_wav(folder / "audio.wav", scene, n_frames)
        row = (vid, uid, 0, 0, "_".join(classes[c] for c in class_ids), split, label)
        rows.append(row)
        if split == "test" and label != "v1s":
            v3_rows.append((*row[:5], "unseen", label))
    _write_json(root / LABEL2IDX, {name: idx for idx, name in enumerate(classes)})
    write_table(root / V3_CSV, AVSS_COLUMNS, v3_rows)
    write_table(root / "metadata.csv", AVSS_COLUMNS, rows)
    return root


def _write_json(path: Path, data: dict[str, int]) -> None:
    """JSON through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


WRITERS = {"s4": write_s4, "ms3": write_ms3, "avss": write_avss}


def write_synthetic(out: str | Path, subset: str, n: int, seed: int = 0) -> Path:
    """Write `n` synthetic videos of `subset` ("s4" | "ms3" | "avss") under `out`; returns the subset's root folder."""
    if subset not in WRITERS:
        raise InputError(f"unknown subset {subset!r}: choose one of {', '.join(WRITERS)}")
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    root = Path(out).expanduser()
    require_folder_path(root, "--out")
    return WRITERS[subset](root, n, seed)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the written root, or one error line and returns its exit code."""
    parser = ArgumentParser(prog="python -m evals.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write into")
    parser.add_argument("--subset", required=True, choices=sorted(WRITERS))
    parser.add_argument("--n", type=int, default=6, help="number of videos (splits cycle test, train, val)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        root = write_synthetic(args.out, args.subset, args.n, args.seed)
    except OpenAVSError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except OSError as err:  # disk full, no permission: the CSVs are written last, so no set looks complete
        print(f"error: cannot write under {args.out} ({err.strerror or err})", file=sys.stderr)
        return 1
    print(root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
