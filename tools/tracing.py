"""The run's trace: one JSON record per event, appended to trace.jsonl as it happens.

Every record has `ts` (Unix seconds), `kind`, `name` and `ms` (duration, 0 for instants), `round` where the run
has refinement rounds, plus the event's own fields. Records are flushed one line at a time so a crashed run still
has the trace up to the crash. The kinds and their fields:

- run_start: source, profile, device, meaningful (False when any model has random weights), resume, frames_from
  (the number messages give the first frame: 1; absent from traces written when they counted from 0)
- model_load: model, face, device (name = role)
- node: seconds and the node's summary fields (name = graph node)
- model_call: model, its inputs and outputs in brief, tokens (name = role: captioner, tagger)
- llm_call: messages [{role, content}], response, tool_calls [{name, args}], model, input_tokens, output_tokens,
  attempt, error (name = planner, translator or critic)
- tool_call: arguments, result (a small summary), images (run-folder-relative paths of frames/overlays shown), error
- critique: verdict {ok, score, problems, suggestion, source}, findings (deterministic checks), images
- decision: action, reason (what the planner chose next and why)
- cache_hit, warning, error: key / message
- chat_turn: turn, text (the user's line, as data), request (the built-in handler's reading of it), planner
- chat_answer: turn, text (the answer shown to the user)
- run_end: status (ok, failed, budget_exhausted), best_round, flagged
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


class TraceWriter:
    """Appends trace records to a JSONL file (or keeps them in memory when `path` is None)."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, kind: str, name: str, ms: float = 0.0, **fields: Any) -> dict[str, Any]:
        record = {"ts": round(time.time(), 3), "kind": kind, "name": name, "ms": round(ms, 1), **fields}
        line = json.dumps(record, default=_jsonable, ensure_ascii=False)
        with self._lock:
            self.records.append(json.loads(line))
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
        return record

    @contextmanager
    def span(self, kind: str, name: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Time a block; the yielded dict collects result fields, written as one record when the block ends.

        A block that raises is recorded with `error` set and the exception propagates.
        """
        result: dict[str, Any] = {}
        start = time.perf_counter()
        try:
            yield result
        except Exception as err:
            self.emit(kind, name, (time.perf_counter() - start) * 1000, **fields, **result, error=_one_line(err))
            raise
        self.emit(kind, name, (time.perf_counter() - start) * 1000, **fields, **result)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"


def read_trace(path: str | Path) -> list[dict[str, Any]]:
    """All records of a trace.jsonl, in order."""
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
