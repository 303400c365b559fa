"""Run the OpenAVS pipeline over an AVSBench subset and score it: `uv run python evals/run_avsbench.py --help`.

A thin entry point; the logic lives in evals.benchmark (run_benchmark for Python callers).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts this folder first on sys.path, where evals/datasets would shadow the Hugging Face
# `datasets` package for transformers' availability checks: import evals.* from the installed project instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

from evals.benchmark.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
