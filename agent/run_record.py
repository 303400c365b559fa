"""run.json: what a run folder records so that a later process can resume it (agent.solve) or continue it (agent.chat).

The process that starts a run writes it first, atomically: the graph name, the settings, the source and, for a
conversation, its thread. Reading it back turns every way it can be unusable (absent, not JSON, not an object, fields
missing, settings this version no longer accepts) into one InputError line: the folder is the user's input, and a
hand-edited or half-copied one must not end in a traceback. Importable before any model library, so `--resume` with
a wrong folder answers at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tools.errors import InputError
from tools.runfiles import read_input_json, require_folder_path, write_json_atomic

RUN_RECORD = "run.json"
CHECKPOINTS = "checkpoints.sqlite"
"""The SQLite checkpointer's database of an agent.solve run (a conversation keeps chat.sqlite)."""
SQLITE_HEADER = b"SQLite format 3\x00"

Settings = TypeVar("Settings", bound=BaseModel)


def write_run_record(run_dir: Path, graph: str, settings: BaseModel, source: Mapping[str, Any], **extra: Any) -> None:
    """Write run_dir/run.json: {graph, settings (as JSON), source, **extra}."""
    record = {"graph": graph, **extra, "settings": settings.model_dump(mode="json"), "source": dict(source)}
    write_json_atomic(run_dir / RUN_RECORD, record)


def named_folder(out: str | Path) -> Path:
    """`out` (an --out value) as a path; InputError for an empty name, which Path would read as the current folder."""
    if not str(out).strip():
        raise InputError("--out needs a folder name")
    return Path(out)


def check_new_run_folder(run_dir: Path) -> None:
    """InputError (naming --out) unless `run_dir` can become a new run's folder: absent, under folders (not under a
    file), or an empty folder. A run replaces masks/ and work/ as wholes, so in a folder of other files it could
    replace someone's own."""
    require_folder_path(run_dir, "--out")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        raise InputError(f"--out {run_dir} already holds other files: give a new or empty folder")


def read_run_record(run_dir: Path, label: str) -> dict[str, Any]:
    """run_dir/run.json as written by write_run_record: graph a string, settings an object, source an object with a
    kind. `label` starts each error line (e.g. "--resume runs/x"). Raises InputError when the file is absent or
    unusable."""
    path = run_dir / RUN_RECORD
    if not path.is_file():
        raise InputError(f"{label}: no {RUN_RECORD} there, so it is not a run folder")
    record = read_input_json(path)
    fields = {"graph": str, "settings": dict, "source": dict}
    if not isinstance(record, dict) or any(not isinstance(record.get(k), kind) for k, kind in fields.items()):
        raise InputError(f"{label}: {RUN_RECORD} lacks the graph, settings and source a run folder records")
    if not isinstance(record["source"].get("kind"), str):
        raise InputError(f"{label}: {RUN_RECORD} names no source kind")
    return record


def resumable_record(run_dir: Path, graph_names: tuple[str, ...]) -> dict[str, Any]:
    """The run.json of an agent.solve run folder that can be resumed: one of `graph_names`, with its checkpoints.
    Raises InputError (naming --resume) otherwise."""
    label = f"--resume {run_dir}"
    record = read_run_record(run_dir, label)
    if record["graph"] == "chat":
        clip = record["source"].get("path", "CLIP")
        raise InputError(f"{label}: a conversation; continue it with python -m agent.chat {clip} --out {run_dir}")
    if record["graph"] not in graph_names:
        raise InputError(f"{label}: it holds a {record['graph']!r} run; --resume continues {' or '.join(graph_names)}")
    if not (run_dir / CHECKPOINTS).is_file():
        raise InputError(f"{label}: no {CHECKPOINTS} there, so there is nothing to resume")
    check_database(run_dir / CHECKPOINTS, label)
    return record


def checkpoint_connection(path: Path) -> sqlite3.Connection:
    """The SQLite connection a checkpointer (SqliteSaver, which keeps it in WAL mode) writes a run's checkpoints to.

    synchronous=NORMAL: a commit is written to the WAL without waiting for the disk, which keeps every committed
    checkpoint when the process is killed (only an OS crash or power loss may roll back the last ones). The
    default, FULL, waited for the disk at each of a pipeline run's ~17 commits: 21 -> 6 ms per run here."""
    conn = sqlite3.connect(path, check_same_thread=False)  # LangGraph may run nodes on other threads
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def check_database(path: Path, label: str) -> None:
    """InputError when `path` holds something other than a SQLite database. An empty file passes: SQLite takes it
    for an empty database (a run killed before its first checkpoint), and the run starts over."""
    try:
        with path.open("rb") as file:
            header = file.read(len(SQLITE_HEADER))
    except OSError as err:
        raise InputError(f"{label}: {path.name} is unreadable ({err.strerror or err})") from None
    if header and header != SQLITE_HEADER:
        raise InputError(f"{label}: {path.name} is not a SQLite database (damaged or replaced), so it cannot resume")


def saved_settings(record: Mapping[str, Any], settings_class: type[Settings], label: str) -> Settings:
    """The record's settings as `settings_class`; InputError (one line: how many fields fail, the first one and
    why) when this version no longer accepts them."""
    try:
        return settings_class.model_validate(record["settings"])
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise InputError(
            f"{label}: the settings in {RUN_RECORD} do not validate ({err.error_count()} field(s); "
            f"{where}: {first['msg']})"
        ) from None
