"""What one benchmark invocation is asked to do, checked once before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from evals.datasets import SUBSETS, EvalClip, load_clips, read_avss_classes
from tools.errors import InputError

if TYPE_CHECKING:  # graphs.context loads torch and transformers: the command line checks its options without them
    from graphs.context import PipelineSettings

Prompts = Literal["audio", "oracle"]
PROMPTS: tuple[str, ...] = ("audio", "oracle")
GRAPHS: tuple[str, ...] = ("pipeline", "agent")


@dataclass
class BenchmarkOptions:
    """Options of `run_benchmark` (the command line fills them from its flags).

    root: dataset folder (see evals.datasets.load_clips). subset: s4 | ms3 | avss | v3. split: CSV split value.
    profile: agent.profiles name, used when `settings` is None. settings: complete pipeline settings (the CLI
        builds them from its model flags; tests pass fakes' specs); eval clips always get write_overlay=False.
    prompts: "audio" (ALM -> translator -> grounder) or "oracle" (the clip's class names, no ALM and no LLM).
    limit: first N clips of the split. workers: clips run in parallel threads sharing one model registry.
    out: output folder (default runs/avsbench-<subset>-<split>-<profile>-<prompts>); rerunning into it resumes.
    predictions: score this prediction tree instead of running models (reports go to `out` only when given).
    max_errors: stop once more than this many clips failed in this invocation (None: never stop).
    cache / cache_dir: the pipeline's disk cache of ALM captions and LLM answers.
    fscore_batch_size: videos per official F-score batch (1 = official). pad_to: AVSS frame padding (None: off).
    show_progress: draw the progress line on stderr.
    """

    root: Path
    subset: str
    split: str = "test"
    profile: str = "default"
    settings: PipelineSettings | None = None
    graph: str = "pipeline"
    prompts: str = "audio"
    limit: int | None = None
    workers: int = 1
    out: Path | None = None
    predictions: Path | None = None
    max_errors: int | None = None
    cache: bool = True
    cache_dir: Path | None = None
    fscore_batch_size: int = 1
    pad_to: int | None = 10
    show_progress: bool = True

    def validate(self) -> None:
        """InputError naming the first unusable option."""
        if self.subset not in SUBSETS:
            raise InputError(f"unknown subset {self.subset!r}: choose one of {', '.join(SUBSETS)}")
        if self.graph not in GRAPHS:
            raise InputError(f"unknown graph {self.graph!r}: choose one of {', '.join(GRAPHS)}")
        if self.prompts not in PROMPTS:
            raise InputError(f"unknown prompts {self.prompts!r}: choose one of {', '.join(PROMPTS)}")
        checks = [
            (self.limit is not None and self.limit < 1, f"--limit must be at least 1, got {self.limit}"),
            (self.workers < 1, f"--workers must be at least 1, got {self.workers}"),
            (self.max_errors is not None and self.max_errors < 0, "--max-errors must be 0 or more"),
            (self.fscore_batch_size < 1, "--fscore-batch-size must be at least 1"),
            (self.pad_to is not None and self.pad_to < 1, "--pad-to must be at least 1 (0 on the CLI: no padding)"),
        ]
        for bad, message in checks:
            if bad:
                raise InputError(message)

    def dataset(self) -> tuple[list[EvalClip], list[str] | None]:
        """The split's clips, every listed file checked, and for AVSS its class names (else None): InputError for a
        root, metadata, split or file that is not there."""
        clips = load_clips(self.root, self.subset, split=self.split, limit=self.limit)
        class_names = read_avss_classes(self.root) if self.subset == "avss" else None
        return clips, class_names

    def default_out(self, profile: str) -> Path:
        """A fixed folder per setting, so running the same command again resumes it."""
        return Path("runs") / f"avsbench-{self.subset}-{self.split}-{profile}-{self.prompts}"
