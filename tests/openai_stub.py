"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1 for tests (a helper module, not a test).

It answers `POST /v1/chat/completions` from a scripted queue of `Reply` objects and records every request, so
tests can drive the REAL openai client / ChatOpenAI end to end without the network:

    with openai_stub(Reply("<answer>\\nframe0: dog\\n</answer>"), Reply(status=500)) as stub:
        llm = ChatOpenAI(model="stub", base_url=stub.base_url, api_key="test", max_retries=0)
        ...
        assert stub.requests[0]["messages"][0]["role"] == "system"

A reply is a text answer, tool calls, an HTTP error status (with headers such as Retry-After or
retry-after-ms), or any of these after a delay (for client timeouts). Plain strings in the queue are text
replies. Requests with `"stream": true` are answered as server-sent events (one content chunk, a finish chunk,
a usage chunk when `stream_options.include_usage` is set, then `[DONE]`). When the queue is empty the stub
answers with `default` if given, else HTTP 400 with `x-should-retry: false`, so a test that makes more calls than
it scripted fails loudly instead of hanging or retrying. `GET /v1/models` lists one model.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted response.

    content: the assistant text (None with tool calls only).
    tool_calls: [{"name": ..., "arguments": dict or JSON string, "id": optional}].
    status: HTTP status; anything but 200 sends an OpenAI-style error body (or `body` when given).
    headers: extra response headers, e.g. {"retry-after-ms": "10"} or {"Retry-After": "0.01"}.
    delay_s: seconds to wait before answering (the stub's shutdown cuts the wait short).
    usage: (prompt_tokens, completion_tokens); default: rough counts from the request and the content.
    finish_reason: default "tool_calls" with tool calls, else "stop".
    body: a raw JSON-able body or string sent instead of the generated one.
    """

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    usage: tuple[int, int] | None = None
    finish_reason: str | None = None
    body: Any = None


def _rough_tokens(text: str) -> int:
    return max(1, len(text) // 4) if text else 0


class OpenAIStub:
    """The server; use `openai_stub(...)` or `start()` / `stop()`. Thread-safe queue and request log."""

    def __init__(self, *replies: Reply | str, default: Reply | str | None = None, model: str = "stub-model") -> None:
        self.model = model
        self.default = _as_reply(default) if default is not None else None
        self.requests: list[dict[str, Any]] = []  # parsed JSON bodies, in arrival order
        self.request_headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self._queue: deque[Reply] = deque(_as_reply(r) for r in replies)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._connections: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------------- control
    def queue(self, *replies: Reply | str) -> None:
        """Append replies to the script."""
        with self._lock:
            self._queue.extend(_as_reply(r) for r in replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet consumed."""
        with self._lock:
            return len(self._queue)

    @property
    def base_url(self) -> str:
        """What to pass as `base_url` to openai / ChatOpenAI."""
        if self._server is None:
            raise RuntimeError("stub not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> OpenAIStub:
        """Bind an ephemeral loopback port and serve in a daemon thread."""
        stub = self

        class Handler(_Handler):
            owner = stub

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        # A short poll interval: shutdown() waits for the serving loop to notice, 0.5 s by default.
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="openai-stub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut pending delays short, release the port."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:  # wake handler threads idling on keep-alive connections
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> OpenAIStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------------------------------------- serving
    def _next_reply(self) -> Reply | None:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, path: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self._lock:
            self.paths.append(path)
            self.request_headers.append(headers)
            self.requests.append(body)

    def _completion(self, request: dict[str, Any], reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [_tool_call(call, next(self._ids)) for call in reply.tool_calls]
        prompt_tokens, completion_tokens = reply.usage or (
            _rough_tokens(json.dumps(request.get("messages", []))),
            _rough_tokens(reply.content or "") + _rough_tokens(json.dumps(reply.tool_calls or "")),
        )
        return {
            "id": f"chatcmpl-stub-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", self.model),
            "system_fingerprint": "stub",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop"),
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _as_reply(reply: Reply | str) -> Reply:
    return Reply(content=reply) if isinstance(reply, str) else reply


def _tool_call(call: dict[str, Any], n: int) -> dict[str, Any]:
    arguments = call.get("arguments", {})
    return {
        "id": call.get("id", f"call_stub_{n}"),
        "type": "function",
        "function": {
            "name": call["name"],
            "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        },
    }


class _Handler(BaseHTTPRequestHandler):
    owner: OpenAIStub
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects; every reply has a Content-Length

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request stderr lines."""

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.owner.model, "object": "model", "created": 0, "owned_by": "stub"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_json(404, _error_body(404, f"no route {self.path}"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            request = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, _error_body(400, "body is not JSON"))
            return
        self.owner._record(self.path, dict(self.headers.items()), request)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, _error_body(404, f"no route {self.path}"))
            return
        reply = self.owner._next_reply()
        if reply is None:
            body = _error_body(400, "openai_stub: no scripted reply left")
            self._send_json(400, body, {"x-should-retry": "false"})
            return
        if reply.delay_s and self.owner._stopping.wait(reply.delay_s):
            self.close_connection = True  # shutting down: drop the connection unanswered
            return
        if reply.status != 200:
            body = reply.body if reply.body is not None else _error_body(reply.status, "scripted error")
            self._send_json(reply.status, body, reply.headers)
            return
        completion = reply.body if reply.body is not None else self.owner._completion(request, reply)
        if request.get("stream"):
            include_usage = bool((request.get("stream_options") or {}).get("include_usage"))
            self._send_stream(completion, include_usage)
        else:
            self._send_json(200, completion, reply.headers)

    # ------------------------------------------------------------------------------------------------ writing
    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self._send(status, data, "application/json", headers)

    def _send_stream(self, completion: dict[str, Any], include_usage: bool) -> None:
        choice = completion["choices"][0]
        message = choice["message"]
        base = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
        delta: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
        if message.get("tool_calls"):
            delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(message["tool_calls"])]
        chunks = [
            base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            base | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
        ]
        if include_usage:
            chunks.append(base | {"choices": [], "usage": completion["usage"]})
        data = "".join(f"data: {json.dumps(chunk)}\n\n" for chunk in chunks) + "data: [DONE]\n\n"
        self._send(200, data.encode(), "text/event-stream")

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout fired): nothing to answer


def _error_body(status: int, message: str) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 429: "rate_limit"}
    return {"error": {"message": message, "type": kinds.get(status, "server_error"), "param": None, "code": None}}


@contextmanager
def openai_stub(*replies: Reply | str, default: Reply | str | None = None) -> Iterator[OpenAIStub]:
    """Start a stub with the scripted replies; stop it on exit."""
    stub = OpenAIStub(*replies, default=default)
    stub.start()
    try:
        yield stub
    finally:
        stub.stop()
