"""Resident memory of this process, from /proc/self/status (Linux), without psutil.

VmHWM is the kernel's exact peak RSS; writing "5" to /proc/self/clear_refs resets it to the current RSS (Linux >= 4.0),
which lets one process measure the peak of each phase. Elsewhere the peak falls back to getrusage's ru_maxrss,
which cannot be reset (phases then report the peak so far).
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0  # kB -> MB
    except OSError:
        return None
    return None


def rss_mb() -> float:
    """Current resident set size (MB); 0.0 where /proc is missing."""
    return _status_mb("VmRSS") or 0.0


def peak_rss_mb() -> float:
    """Peak resident set size (MB) since the process started or the last successful `reset_peak_rss`."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    scale = 1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, kB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def reset_peak_rss() -> bool:
    """Reset the peak to the current RSS; False where the kernel does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    peak = _status_mb("VmHWM")
    return peak is not None and peak <= rss_mb() + 1.0
