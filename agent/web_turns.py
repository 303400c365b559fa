"""One chat turn of a web session: ChatSession.send runs in its own thread and its events go through a queue.

Why a thread of its own rather than iterating send() inside the response: a turn must finish, and release its
session, even when the browser goes away mid-answer (a closed tab must not leave the session locked or its history
half-written); the response only reads the queue. The turn also takes the app's run lock, so one graph runs at a
time in the process: the models are shared and one run already uses every core (or the one GPU).

Events are streamed as server-sent events (one `data: {json}` per ChatEvent) because a turn can take minutes with
real models, and the page shows progress lines and tokens as they come; a client that asks for JSON
(Accept: application/json) gets all events at once in one object instead, which suits scripts and curl.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

from agent.web_store import WebSession
from tools.errors import OpenAVSError

HEARTBEAT_S = 15.0  # an SSE comment this often keeps proxies and the browser from timing out a long run
Links = Callable[[WebSession], dict[str, str]]


def event_dict(event: Any) -> dict[str, Any]:
    """A ChatEvent as plain JSON-ready data (paths and other objects in `data` become strings)."""
    data = getattr(event, "data", None) or {}
    return {
        "kind": str(getattr(event, "kind", "progress")),
        "text": str(getattr(event, "text", "")),
        "data": json.loads(json.dumps(data, default=str)),
    }


def _error_line(err: Exception) -> str:
    if isinstance(err, OpenAVSError):
        return str(err)
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"internal error: {type(err).__name__}: {first}"


class Turn:
    """Answers `text` in `session`, whose lock the caller has acquired; the turn releases it when done."""

    def __init__(self, session: WebSession, text: str, run_lock: threading.Lock, links: Links) -> None:
        self.session = session
        self.text = text
        self.run_lock = run_lock
        self.links = links
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=f"web-turn-{session.id[:6]}", daemon=True)
        self._thread.start()

    def _put(self, kind: str, text: str, data: dict[str, Any] | None = None) -> None:
        self._queue.put({"kind": kind, "text": text, "data": data or {}})

    def _run(self) -> None:
        try:
            if not self.run_lock.acquire(blocking=False):
                self._put("progress", "waiting for another clip's run to finish")
                self.run_lock.acquire()
            try:
                for event in self.session.chat.send(self.text):
                    self._queue.put(event_dict(event))
            finally:
                self.run_lock.release()
        except Exception as err:  # every failure reaches the user as one line; the run's trace has the record
            self._put("error", _error_line(err))
        finally:
            self.session.turns += 1
            try:
                links = self.links(self.session)
            except Exception:
                links = {}
            # Released before the last events, so a client that sends again as soon as it sees "outputs" is served.
            self.session.lock.release()
            self._put("outputs", "", links)
            self._queue.put(None)

    def events(self, heartbeat_s: float | None = None) -> Iterator[dict[str, Any] | None]:
        """The turn's events in order; None every `heartbeat_s` of silence (when given), so a stream can ping."""
        while True:
            try:
                item = self._queue.get(timeout=heartbeat_s)
            except queue.Empty:
                yield None
                continue
            if item is None:
                return
            yield item

    def sse(self) -> Iterator[str]:
        """The events as a text/event-stream body."""
        for item in self.events(HEARTBEAT_S):
            if item is None:
                yield ": still working\n\n"
            else:
                yield f"data: {json.dumps(item, ensure_ascii=False)}\n\n"

    def collect(self) -> dict[str, Any]:
        """All events at once: {"events": [...], "answer": text or None, "error": text or None, "outputs": {...}}."""
        events = list(e for e in self.events() if e is not None)
        last = {kind: next((e for e in reversed(events) if e["kind"] == kind), None) for kind in ("answer", "error")}
        outputs = next((e["data"] for e in reversed(events) if e["kind"] == "outputs"), {})
        return {
            "events": events,
            "answer": last["answer"]["text"] if last["answer"] else None,
            "error": last["error"]["text"] if last["error"] else None,
            "outputs": outputs,
        }
