"""What one run of evals.bench measures (BenchConfig), importable before any model library: evals.bench builds its
quick and full configurations, and answers `--help` or a mistyped option, without loading torch (evals.bench_core,
which runs the phases, does)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from tools.models.base import Face


@dataclass(frozen=True)
class BenchConfig:
    """What one benchmark measures. Sizes in px, times in s; `frames` = seconds of the short clip (AVSBench
    sampling takes one frame per second). grounder_max_side None keeps GroundingDINO's own resize (800/1333)."""

    face: Face = "random"
    device: str = "cpu"
    grounder_model: str = "IDEA-Research/grounding-dino-tiny"
    segmenter_model: str = "facebook/sam2.1-hiera-tiny"
    grounder_max_side: int | None = None
    sam2_image_size: int = 1024
    clip_size: tuple[int, int] = (1280, 720)
    fps: float = 25.0
    frames: int = 10
    long_seconds: float = 120.0
    rounds: int = 3  # the first ground -> segment round plus two refine rounds: the agent's default max_rounds
    long_rounds: int = 1
    top_k: int = 3
    seed_frames: int = 3  # propagate mode: frames grounded to choose the seed (the product default)
    cache_capacity: int | None = None  # SAM2 embeddings kept; None: the product default (PipelineSettings)
    grounder_batch: int | None = None  # images per GroundingDINO forward in the optimized way; None: grounder_batch_for
    model_max_side: int = 1280
    threads: int | None = None

    def thresholds(self, round_index: int) -> tuple[float, float]:
        """(box, text) thresholds of a round: the box threshold steps up by 0.05 per round, as the planner's does."""
        return round(0.25 + 0.05 * round_index, 2), 0.25

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchConfig:
        return cls(**{**data, "clip_size": tuple(data["clip_size"])})


def with_overrides(cfg: BenchConfig, **changes: Any) -> BenchConfig:
    """`cfg` with some fields changed (None values ignored)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
