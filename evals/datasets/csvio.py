"""Reading and writing the AVSBench metadata CSVs; malformed files raise InputError naming the file."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tools.errors import InputError


def read_table(path: Path, required: Sequence[str] = (), min_columns: int = 1) -> tuple[list[str], list[list[str]]]:
    """Read a comma-separated file with a header row.

    Returns (header, rows); every row has exactly len(header) fields (blank lines are ignored: they carry nothing).
    Raises InputError if the file is missing or unreadable, a column in `required` is absent, the header has fewer
    than `min_columns` columns, or a row's field count differs from the header's (message names path and line).
    """
    if not path.is_file():
        raise InputError(f"missing metadata CSV: {path}")
    try:
        # utf-8-sig: tolerate a byte-order mark written by spreadsheet tools.
        with path.open(newline="", encoding="utf-8-sig") as fh:
            lines = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"unreadable metadata CSV {path}: {err}") from err
    numbered = [(i + 1, row) for i, row in enumerate(lines) if any(field.strip() for field in row)]
    if not numbered:
        raise InputError(f"malformed metadata CSV {path}: empty file, no header")
    header = [h.strip() for h in numbered[0][1]]
    if len(header) < min_columns:
        raise InputError(f"malformed metadata CSV {path}: {len(header)} columns, need at least {min_columns}")
    missing = [c for c in required if c not in header]
    if missing:
        raise InputError(f"malformed metadata CSV {path}: no column {missing[0]!r} in header {header}")
    rows: list[list[str]] = []
    for line_no, row in numbered[1:]:
        if len(row) != len(header):
            raise InputError(
                f"malformed metadata CSV {path}: line {line_no} has {len(row)} fields, header has {len(header)}"
            )
        rows.append([field.strip() for field in row])
    return header, rows


def write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a CSV through a temporary file and an atomic rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
