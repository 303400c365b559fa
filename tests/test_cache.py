"""The disk cache of captions and LLM answers: a damaged entry is a miss, an unusable folder is refused before a
run starts, and a write that fails mid-run costs the copy, not the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.cache import DiskCache, open_cache
from tools.errors import InputError


def test_values_round_trip_and_a_damaged_entry_is_a_miss(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "new" / "cache")
    key = DiskCache.key(model="m", queries=("q",), timestamps=[0.5])
    assert key == DiskCache.key(timestamps=[0.5], queries=("q",), model="m")  # the order of the parts is irrelevant
    assert cache.get("captions", key) is None
    cache.put("captions", key, {"captions": [["a dog barks"]]})
    assert cache.get("captions", key) == {"captions": [["a dog barks"]]}
    next((tmp_path / "new" / "cache" / "captions").rglob("*.json")).write_text('{"captions": [[')
    assert cache.get("captions", key) is None
    assert (cache.hits, cache.misses) == (1, 2)


@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_a_folder_that_cannot_hold_the_cache_is_refused(tmp_path: Path, case: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    folder = blocker if case == "a file" else blocker / "cache"
    with pytest.raises(InputError, match="--no-cache"):
        open_cache(folder)


def test_a_write_that_fails_is_counted_not_raised(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "cache")
    (tmp_path / "cache" / "captions").write_text("a file where the namespace folder should be")
    cache.put("captions", DiskCache.key(x=1), {"captions": []})
    assert cache.write_errors == 1 and cache.last_write_error.startswith(("NotADirectoryError", "FileExistsError"))
    assert cache.get("captions", DiskCache.key(x=1)) is None
