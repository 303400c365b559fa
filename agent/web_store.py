"""The web app's sessions: one folder and one chat per uploaded or picked clip, and the rules on what is accepted.

Every session lives in `<root>/<id>/` (root: runs/web by default): the clip as `<name>.<ext>`, the chat's run folder
as `run/`, and downloads written on demand (masks.zip). Nothing outside that folder is ever served: `confined()`
resolves a path (symlinks too) and refuses it unless it lies inside the session folder. Session ids are random
URL-safe tokens and are checked against a strict pattern before any lookup, so an id cannot name a path.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from tools.errors import InputError, OpenAVSError
from tools.media import probe_clip

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
# What a browser is told each stored clip is; other extensions are kept as .mp4 (FFmpeg reads the content anyway).
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
    ".avi": "video/x-msvideo",
}
MB = 1024 * 1024


def human_size(n_bytes: float) -> str:
    """'200 MB', '4 KB': limits as a user reads them."""
    return f"{n_bytes / MB:g} MB" if n_bytes >= MB else f"{n_bytes / 1024:g} KB"


class WebError(Exception):
    """A request the app refuses: an HTTP status and one line for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Bounds on what one user can make the app store and run."""

    max_upload_bytes: int = 200 * MB
    max_clip_seconds: float = 120.0
    max_sessions: int = 16  # chats kept open at once; the least recently used idle one is closed beyond this
    max_message_chars: int = 2000


class ChatLike(Protocol):
    """What the app needs of agent.chat_session.ChatSession (tests pass a stand-in)."""

    run_dir: Path
    thread_id: str

    def send(self, text: str) -> Iterator[Any]: ...
    def history(self) -> list[dict[str, str]]: ...
    def outputs(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


SessionFactory = Callable[[Path, Path], ChatLike]  # (clip, run folder to create) -> chat


@dataclass
class WebSession:
    """One clip and its chat. `lock` is held while a message is being answered, so turns never overlap."""

    id: str
    folder: Path
    clip: Path
    duration_s: float
    chat: ChatLike
    lock: threading.Lock = field(default_factory=threading.Lock)
    turns: int = 0
    last_used: float = field(default_factory=time.monotonic)


def safe_clip_name(filename: str | None) -> str:
    """A file name for a stored clip: the upload's stem reduced to [A-Za-z0-9_-] (it names the mask PNGs), with its
    extension if it is a known video one, else .mp4. Nothing of the user's name can reach outside the folder."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", PurePosixPath(name).stem).strip("_")[:60] or "clip"
    ext = PurePosixPath(name).suffix.lower()
    return stem + (ext if ext in VIDEO_TYPES else ".mp4")


def confined(folder: Path, path: str | Path | None) -> Path | None:
    """`path` resolved, if it is an existing file inside `folder` (after following links); else None."""
    if path is None or "\x00" in str(path):
        return None
    root = folder.resolve()
    resolved = (root / path).resolve()
    return resolved if resolved.is_relative_to(root) and resolved.is_file() else None


class SessionStore:
    """All open sessions of one app, keyed by id; thread-safe (FastAPI runs sync work in a thread pool)."""

    def __init__(self, root: Path, factory: SessionFactory, limits: Limits, examples: Path | None) -> None:
        self.root = root
        self.factory = factory
        self.limits = limits
        self.examples_dir = examples
        self._sessions: dict[str, WebSession] = {}
        self._lock = threading.Lock()

    def new_folder(self) -> tuple[str, Path]:
        """A fresh, empty session folder and its id."""
        session_id = secrets.token_urlsafe(18)
        folder = self.root / session_id
        folder.mkdir(parents=True)
        return session_id, folder

    def discard(self, folder: Path) -> None:
        """Remove a session folder whose clip was refused: a refused upload leaves nothing behind."""
        if folder.resolve().is_relative_to(self.root.resolve()):
            shutil.rmtree(folder, ignore_errors=True)

    def open(self, session_id: str, folder: Path, clip: Path) -> WebSession:
        """Check the stored clip (a video, not too long), start its chat and register the session.

        Raises WebError(400) with the probe's one-line reason; the caller discards the folder then.
        """
        try:
            info = probe_clip(clip)
        except InputError as err:
            # The probe names the server-side path; the user only needs the reason.
            raise WebError(400, f"{clip.name}: {str(err).split(': ', 1)[-1]}") from None
        if info.duration_s > self.limits.max_clip_seconds:
            raise WebError(
                400, f"the clip is {info.duration_s:.1f} s long; the limit is {self.limits.max_clip_seconds:g} s"
            )
        try:
            chat = self.factory(clip, folder / "run")
        except OpenAVSError as err:
            raise WebError(400, str(err)) from None
        session = WebSession(session_id, folder, clip, info.duration_s, chat)
        with self._lock:
            self._sessions[session_id] = session
            evicted = self._evict()
        for old in evicted:
            old.chat.close()
        return session

    def _evict(self) -> list[WebSession]:
        """Drop the least recently used idle sessions beyond the limit (their folders stay on disk). An evicted
        session's lock stays held, so a request that looked it up just before cannot start a turn on it."""
        evicted: list[WebSession] = []
        for old in sorted(self._sessions.values(), key=lambda s: s.last_used):
            if len(self._sessions) <= self.limits.max_sessions:
                break
            if old.lock.acquire(blocking=False):
                del self._sessions[old.id]
                evicted.append(old)
        return evicted

    def get(self, session_id: str) -> WebSession:
        """The open session with this id; 404 for anything else, including ids that are not well-formed."""
        if not SESSION_ID.fullmatch(session_id):
            raise WebError(404, "no such session")
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise WebError(404, "no such session (it may have been closed; upload the clip again)")
        session.last_used = time.monotonic()
        return session

    def example_names(self) -> list[str]:
        """The video files directly inside the examples folder."""
        folder = self.examples_dir
        if folder is None or not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_TYPES)

    def example_path(self, name: Any) -> Path:
        """The example clip called `name`: only a plain file name listed by example_names() is accepted."""
        if not isinstance(name, str) or name not in self.example_names():
            raise WebError(400, f"no example called {str(name)[:80]!r}; choose one of: {self.example_names()}")
        assert self.examples_dir is not None  # example_names() is empty otherwise
        return self.examples_dir / name

    def close_all(self) -> None:
        """Close every idle chat. A chat still answering is left to the process's exit (closing waits for its
        turn, which could hold a Ctrl-C for minutes); the conversation closes that turn when it is reopened."""
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            if not session.lock.locked():
                session.chat.close()
