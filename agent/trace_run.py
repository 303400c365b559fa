"""A run folder as the trace page reads it: trace records, result.json and run.json, each tolerated when
damaged (a crashed run leaves a cut-off last line; a failed one has no result.json), and thumbnails of the images
the trace names, only from inside the folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from tools.htmltext import as_list, esc
from tools.runfiles import read_json
from tools.thumbnails import image_data_uri


@dataclass
class RunData:
    """What the page is made from: the trace records (in order), result.json and run.json when readable."""

    run_dir: Path
    records: list[dict[str, Any]]
    result: dict[str, Any] | None
    run_info: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    def first(self, kind: str) -> dict[str, Any]:
        return next((r for r in self.records if r.get("kind") == kind), {})

    def last(self, kind: str) -> dict[str, Any]:
        return next((r for r in reversed(self.records) if r.get("kind") == kind), {})

    def of_kind(self, *kinds: str) -> list[tuple[int, dict[str, Any]]]:
        """(position in the trace, record) of each record of these kinds; the position is the record's anchor."""
        return [(i, r) for i, r in enumerate(self.records) if r.get("kind") in kinds]


def _read_records(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    """Every record that parses; a crashed run can leave a cut-off last line, which is noted, not fatal."""
    records = []
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"trace.jsonl line {number} is not JSON (skipped)")
                continue
            if isinstance(record, dict):
                records.append(record)
            else:
                problems.append(f"trace.jsonl line {number} is not a record (skipped)")
    return records


def _read_optional(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, ValueError) as err:
        problems.append(f"{path.name} is unreadable: {err}")
        return None
    return data if isinstance(data, dict) else None


def load_run_data(run_dir: Path) -> RunData:
    problems: list[str] = []
    records = _read_records(run_dir / "trace.jsonl", problems)
    result = _read_optional(run_dir / "result.json", problems)
    run_info = _read_optional(run_dir / "run.json", problems)
    return RunData(run_dir, records, result, run_info, problems)


def inside(run_dir: Path, relative: Any) -> Path | None:
    """The file a run-folder-relative path names, or None when it is missing or outside the folder: the paths come
    from the trace, and a page must not embed e.g. ../../home/me/.ssh/id_rsa.png."""
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        return None
    root = run_dir.resolve()
    path = (root / relative).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


class Thumbs:
    """Thumbnails of run-folder images as <figure>s with data URIs; each file is encoded once per page."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._uris: dict[Path, str | None] = {}

    def uri(self, path: Path) -> str | None:
        if path not in self._uris:
            try:
                with Image.open(path) as image:
                    self._uris[path] = image_data_uri(image)
            except Exception:  # any undecodable or oversized file is shown as missing, not fatal
                self._uris[path] = None
        return self._uris[path]

    def figure(self, relative: Any) -> str:
        path = inside(self.run_dir, relative)
        uri = self.uri(path) if path else None
        caption = f"<figcaption>{esc(relative)}</figcaption>"
        if uri is None:
            why = "not found in the run folder" if path is None else "unreadable"
            return f'<figure class="thumb missing"><div>image {why}</div>{caption}</figure>'
        return f'<figure class="thumb"><img src="{uri}" alt="{esc(relative)}">{caption}</figure>'

    def row(self, images: Any) -> str:
        items = as_list(images) if not isinstance(images, str) else [images]
        return f'<div class="thumbs">{"".join(self.figure(p) for p in items)}</div>' if items else ""
