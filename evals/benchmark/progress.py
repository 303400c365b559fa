"""A one-line progress display with an ETA on stderr.

On a terminal the line is redrawn in place; elsewhere (logs, pipes) it is printed as a new line at most every
`log_every_s` seconds and at the end, so a log of a long run stays short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """12 s, 3m05s, 1h02m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class ProgressLine:
    """Counts clips as they finish; `total` counts every clip, `skipped` the ones an earlier run finished."""

    def __init__(
        self, label: str, total: int, *, stream: TextIO | None = None, enabled: bool = True, log_every_s: float = 10.0
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.log_every_s = log_every_s
        self.counts = {"done": 0, "restarted": 0, "skipped": 0, "failed": 0}
        self._start = time.perf_counter()
        self._last_print = float("-inf")
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    def text(self) -> str:
        """The current line: position, outcome counts, throughput and ETA (from clips run in this invocation)."""
        ran = self.finished - self.counts["skipped"]
        elapsed = time.perf_counter() - self._start
        left = self.total - self.finished
        pace = elapsed / ran if ran else None
        eta = format_duration(pace * left) if pace is not None else "?"
        pct = 100.0 * self.finished / self.total if self.total else 100.0
        speed = f"{pace:.1f} s/clip" if pace is not None else "- s/clip"
        counts = " ".join(f"{k} {v}" for k, v in self.counts.items() if v)
        return f"{self.label} {self.finished}/{self.total} ({pct:.0f}%) {counts} | {speed} | ETA {eta}"

    def update(self, status: str) -> None:
        """Count one finished clip ("done", "restarted", "skipped" or "failed") and redraw."""
        self.counts[status] += 1
        self.draw()

    def draw(self) -> None:
        """Redraw the line (terminal), or print it when it is due (log)."""
        if not self.enabled:
            return
        now = time.perf_counter()
        if self._tty:
            self.stream.write("\r\033[K" + self.text())
        elif self.finished == self.total or now - self._last_print >= self.log_every_s:
            self.stream.write(self.text() + "\n")
            self._last_print = now
        self.stream.flush()

    def close(self) -> None:
        """End the line (on a terminal) so later messages start on their own line."""
        if self.enabled and self._tty:
            self.stream.write("\n")
            self.stream.flush()
