"""map_ahead / for_each_in_threads: every call runs, results in order, inputs read lazily with a bounded backlog,
errors come back. Prefetcher: a started result is taken once, in the background; nothing started is computed now."""

from __future__ import annotations

import threading
import time

import pytest

from tools.parallel import Prefetcher, for_each_in_threads, map_ahead


def test_every_call_runs_and_the_backlog_is_bounded() -> None:
    done: list[int] = []
    lock = threading.Lock()
    produced = 0
    most_ahead = 0

    def record(k: int) -> None:
        with lock:
            done.append(k)

    def calls():
        nonlocal produced, most_ahead
        for k in range(50):
            with lock:
                most_ahead = max(most_ahead, produced - len(done))
            produced += 1
            yield (k,)

    for_each_in_threads(record, calls(), workers=3)
    assert sorted(done) == list(range(50))
    assert most_ahead <= 2 * 3 + 1  # at most two calls per thread ahead of the one being collected


def test_the_first_error_is_raised() -> None:
    def fail_on_seven(k: int) -> None:
        if k == 7:
            raise ValueError("seven")

    with pytest.raises(ValueError, match="seven"):
        for_each_in_threads(fail_on_seven, ((k,) for k in range(20)), workers=2)


def test_map_ahead_yields_results_in_order() -> None:
    assert list(map_ahead(lambda k: k * k, ((k,) for k in range(30)), workers=4)) == [k * k for k in range(30)]


def test_a_prefetched_result_is_computed_once_in_the_background() -> None:
    prefetch = Prefetcher()
    calls: list[tuple[int, str]] = []
    release = threading.Event()

    def square(k: int) -> int:
        assert release.wait(10)
        calls.append((k, threading.current_thread().name))
        return k * k

    prefetch.start("a", square, 3)
    prefetch.start("a", square, 3)  # already under way: not started twice
    release.set()
    assert prefetch.take("a", square, 3) == 9
    assert len(calls) == 1 and calls[0][1].startswith("openavs-prefetch")
    # Taken once: a second take (or a key never started) computes now, on the caller's thread.
    assert prefetch.take("a", square, 4) == 16 and calls[-1] == (4, threading.current_thread().name)
    prefetch.close()


def test_a_prefetch_error_is_raised_by_take() -> None:
    prefetch = Prefetcher()

    def fail() -> None:
        raise ValueError("bad frame")

    prefetch.start("frames", fail)
    with pytest.raises(ValueError, match="bad frame"):
        prefetch.take("frames", fail)
    prefetch.close()


def test_close_waits_for_work_nobody_took() -> None:
    prefetch = Prefetcher()
    done = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        done.set()

    prefetch.start("frames", slow)
    prefetch.close()
    assert done.is_set()
