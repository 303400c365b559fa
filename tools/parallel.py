"""Work that releases the GIL (PIL encoding and blending, zlib) spread over a few threads, fed lazily."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


def default_workers() -> int:
    """Up to 4 threads, at least 1, never more than the machine's cores."""
    return max(1, min(4, os.cpu_count() or 1))


def for_each_in_threads(function: Callable[..., Any], calls: Iterable[tuple[Any, ...]], workers: int = 0) -> None:
    """Call `function(*args)` for each args tuple of `calls` on `workers` threads (0: default_workers()).

    `calls` is read lazily, in the caller's thread, and at most two calls per thread wait to run, so an iterator that
    decodes or loads as it goes holds a bounded number of items. Returns when all calls are done; the first error
    raised by a call is raised here."""
    workers = workers or default_workers()
    pending: list[Future[Any]] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="openavs-io") as pool:
        for args in calls:
            pending.append(pool.submit(function, *args))
            if len(pending) >= 2 * workers:
                pending.pop(0).result()
        for future in pending:
            future.result()
