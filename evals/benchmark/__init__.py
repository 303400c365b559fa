"""The AVSBench benchmark runner: run the pipeline over a subset, score it, and report (evals/run_avsbench.py).

`run_benchmark(options, registry=..., translator=...)` is the Python entry; `main(argv)` the command line.
"""

from __future__ import annotations

from typing import Any

from evals.benchmark.options import BenchmarkOptions

__all__ = ["BenchmarkOptions", "TooManyErrorsError", "run_benchmark"]


def __getattr__(name: str) -> Any:
    """The runner's names, imported on first use: it loads torch and transformers, which the command line (a
    submodule, so importing this package first) must not wait for before checking its arguments."""
    if name in {"TooManyErrorsError", "run_benchmark"}:
        from evals.benchmark import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
