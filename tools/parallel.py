"""Work that releases the GIL (PIL encoding and blending, zlib) spread over a few threads, fed lazily."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

R = TypeVar("R")


def default_workers() -> int:
    """Up to 4 threads, at least 1, never more than the machine's cores."""
    return max(1, min(4, os.cpu_count() or 1))


def map_ahead(function: Callable[..., R], calls: Iterable[tuple[Any, ...]], workers: int = 0) -> Iterator[R]:
    """`function(*args)` for each args tuple of `calls`, computed on `workers` threads (0: default_workers()) and
    yielded in order.

    `calls` is read lazily, in the caller's thread, and at most two calls per thread run or wait ahead of the one
    yielded, so an iterator that decodes or loads as it goes holds a bounded number of items. The first error raised
    by a call is raised here, when its result is due; leaving the loop early waits for the calls already started."""
    workers = workers or default_workers()
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="openavs-io") as pool:
        for args in calls:
            pending.append(pool.submit(function, *args))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def for_each_in_threads(function: Callable[..., Any], calls: Iterable[tuple[Any, ...]], workers: int = 0) -> None:
    """map_ahead for its effects: returns when every call is done."""
    for _ in map_ahead(function, calls, workers):
        pass
