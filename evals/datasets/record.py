"""The uniform per-video record every AVSBench loader returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Subset = Literal["s4", "ms3", "avss", "v3"]
SUBSETS: tuple[str, ...] = ("s4", "ms3", "avss", "v3")


@dataclass(frozen=True)
class EvalClip:
    """One video of an AVSBench subset, as paths (nothing is decoded here).

    subset: "s4" | "ms3" (binary, AVSBench-object), "avss" (semantic, 71 classes), "v3" (binary, from the AVSS tree).
    split: the CSV's split value ("train" | "val" | "test"; "unseen" for V3).
    name: S4/MS3 video name (CSV column 0) or AVSS/V3 `uid`.
    category: S4 category folder (e.g. "playing_acoustic_guitar"); None elsewhere.
    label: AVSS/V3 label folder ("v1s" | "v1m" | "v2"); None for S4/MS3.
    frame_paths: one RGB frame per annotated second, in time order (5, or 10 for AVSS v2).
    gt_mask_paths: parallel to frame_paths; None where the split has no annotation (S4 and AVSS v1s TRAIN keep
        only the first frame's mask). Binary 0/255 PNGs for S4/MS3; AVSS/V3 point at labels_rgb (VOC colours).
    audio_path: the clip's wav (16 kHz for S4/MS3).
    class_names: readable nouns of the sounding classes, usable as text prompts (S4: mapped category; AVSS/V3 and
        MS3: a_obj tokens with "-" read as " ", non-objects dropped); empty when unknown.
    raw_classes: the class tokens exactly as the metadata spells them (S4 category; a_obj split on "_").
    """

    subset: Subset
    split: str
    name: str
    category: str | None
    label: str | None
    frame_paths: tuple[Path, ...]
    gt_mask_paths: tuple[Path | None, ...]
    audio_path: Path
    class_names: tuple[str, ...] = ()
    raw_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.frame_paths) != len(self.gt_mask_paths):
            raise ValueError(f"{self.name}: {len(self.frame_paths)} frames but {len(self.gt_mask_paths)} mask slots")

    @property
    def frame_count(self) -> int:
        """Number of frames (5, or 10 for AVSS v2)."""
        return len(self.frame_paths)

    @property
    def annotated_frames(self) -> tuple[int, ...]:
        """0-based indices of the frames that have a ground-truth mask; only these are scored."""
        return tuple(i for i, p in enumerate(self.gt_mask_paths) if p is not None)

    @property
    def is_semantic(self) -> bool:
        """True for AVSS (71-class index masks), False for the binary subsets S4, MS3 and V3."""
        return self.subset == "avss"

    def all_paths(self) -> list[Path]:
        """Every file this record refers to: frames, existing mask slots, audio."""
        masks = [p for p in self.gt_mask_paths if p is not None]
        return [*self.frame_paths, *masks, self.audio_path]
