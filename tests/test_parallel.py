"""map_ahead / for_each_in_threads: every call runs, results in order, inputs read lazily with a bounded backlog,
errors come back."""

from __future__ import annotations

import threading

import pytest

from tools.parallel import for_each_in_threads, map_ahead


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
