"""The AVSBench benchmark runner: run the pipeline over a subset, score it, and report (evals/run_avsbench.py).

`run_benchmark(options, registry=..., translator=...)` is the Python entry; `main(argv)` the command line.
"""

from __future__ import annotations

from evals.benchmark.options import BenchmarkOptions
from evals.benchmark.runner import TooManyErrorsError, run_benchmark

__all__ = ["BenchmarkOptions", "TooManyErrorsError", "run_benchmark"]
