"""Work that releases the GIL (PIL encoding and blending, zlib, video decoding) spread over a few threads, fed
lazily, or started ahead of the step that needs it."""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
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


class Prefetcher:
    """Results computed ahead of the step that needs them, on one background thread, matched by key.

    `start(key, f, *args)` begins f(*args) in the background (nothing new while `key` is started and not yet taken);
    `take(key, f, *args)` returns that result (raising its error), or computes f(*args) now when nothing was started
    under `key` (e.g. in a resumed run). Either way the step calling `take` owns the result, so a prefetch is never
    more than a head start. `close()` waits for the work still running and drops the results nobody took (the steps
    that would have taken them never ran).
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[Hashable, Future[Any]] = {}
        self._lock = threading.Lock()  # the agent's tools may run on several threads

    def start(self, key: Hashable, function: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if key in self._futures:
                return
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="openavs-prefetch")
            self._futures[key] = self._pool.submit(function, *args)

    def take(self, key: Hashable, function: Callable[..., R], *args: Any) -> R:
        with self._lock:
            future = self._futures.pop(key, None)
        return function(*args) if future is None else future.result()

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._futures.clear()
        if pool is not None:
            pool.shutdown(wait=True)
