"""`python -m agent.web [--host 127.0.0.1] [--port 8000] [--profile P]`: a local web app to chat about a clip.

Upload a clip (or pick one from the examples folder), play it, ask what is making the sound, watch the overlay
with the masks, read the trace, and download the masks and result.json. Each clip gets one ChatSession (the same
conversation as `python -m agent.chat`) and one folder, runs/web/<session>/, which holds everything it stores.

Why FastAPI and one hand-written page rather than Gradio: FastAPI, uvicorn and python-multipart are a few MB where
Gradio brings 100+ MB of dependencies and its own front-end bundle; a plain page (agent/web_page.py)
is readable in one sitting and loads nothing from outside; and the app keeps full control of what it accepts
(upload size counted while the body arrives, clip duration probed before any model runs) and of what it serves
(only files inside a session's folder, by fixed names).

Safety: binds to 127.0.0.1 unless --host says otherwise; on loopback, requests must name a loopback Host (so a web
page cannot reach the app through DNS rebinding), and a POST from another origin is refused. Endpoints:
  GET  /                                  the page
  GET  /api/config, /api/examples         limits and profile; the example clips
  POST /api/sessions                      multipart upload (field "clip"), or JSON {"example": name} -> 201 {id, ...}
  POST /api/sessions/{id}/messages        JSON {"text": ...} -> server-sent events (see agent/web_turns.py for why),
                                          or one JSON object when the request accepts only application/json
  GET  /api/sessions/{id}/clip, overlay.mp4, masks.zip, result.json, trace.html, history
Refused input is one line in {"detail": ...}: 400 (not a video, too long, bad request), 413 (too large),
404 (no such session or file yet), 409 (the session is still answering).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import shutil
import socket
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.cli_names import PROFILE_NAMES
from agent.web_files import TRACE_CSP, links, output_path, write_masks_zip, write_trace_page
from agent.web_page import content_security_policy, new_nonce, render_page
from agent.web_store import (
    MB,
    VIDEO_TYPES,
    Limits,
    SessionFactory,
    SessionStore,
    WebError,
    WebSession,
    confined,
    human_size,
    safe_clip_name,
)
from agent.web_turns import Turn
from tools.cache import DiskCache, open_cache
from tools.cli import ArgumentParser
from tools.errors import InputError
from tools.runfiles import atomic_path, require_folder_path

if TYPE_CHECKING:
    from agent.chat_session import ChatSession
    from graphs.context import AgentSettings

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
JSON_BODY_LIMIT = 64 * 1024  # messages and example picks are small; nothing else is read into memory whole
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the clip in an upload body
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class _TooLarge(Exception):
    pass


class LocalOnly:
    """ASGI middleware: the Host must be one of `allowed_hosts` (when given), and a state-changing request from a
    browser must come from this app's own origin, so other sites can neither read from nor post to the app."""

    def __init__(self, app: ASGIApp, allowed_hosts: Collection[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else frozenset(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            host = headers.get("host", "")
            if self.allowed is not None and urlsplit(f"//{host}").hostname not in self.allowed:
                await JSONResponse({"detail": "unexpected Host header"}, 400)(scope, receive, send)
                return
            origin = headers.get("origin")
            if scope["method"] not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != host:
                await JSONResponse({"detail": "cross-origin request refused"}, 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _too_large(limit: int, what: str = "file") -> WebError:
    return WebError(413, f"the {what} is larger than the {human_size(limit)} limit")


def _limited(request: Request, limit: int) -> Request:
    """The same request, whose body raises _TooLarge once more than `limit` bytes have arrived: a too large upload
    is refused while it streams in, not after it has been stored."""
    seen = 0

    async def receive() -> Message:
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _TooLarge
        return message

    return Request(request.scope, receive)


async def _read_json(request: Request) -> dict[str, Any]:
    body = b""
    try:
        async for chunk in _limited(request, JSON_BODY_LIMIT).stream():
            body += chunk
    except _TooLarge:
        raise WebError(413, f"the request body is larger than {human_size(JSON_BODY_LIMIT)}") from None
    try:
        data = json.loads(body)
    except ValueError:
        raise WebError(400, "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise WebError(400, "the request body must be a JSON object")
    return data


def _copy_upload(src: BinaryIO, dest: Path, limit: int) -> None:
    with atomic_path(dest) as tmp, tmp.open("wb") as out:
        copied = 0
        while chunk := src.read(1024 * 1024):
            copied += len(chunk)
            if copied > limit:
                raise _too_large(limit)
            out.write(chunk)
    if copied == 0:
        raise WebError(400, "the uploaded file is empty")


def _session_info(session: WebSession) -> dict[str, Any]:
    return {"id": session.id, "clip": session.clip.name, "duration_s": session.duration_s, "links": links(session)}


def _file(path: Path | None, media_type: str, what: str, download: str | None = None) -> FileResponse:
    if path is None:
        raise WebError(404, f"no {what} yet: ask a question first")
    headers = {**COMMON_HEADERS, "Cache-Control": "no-cache"}
    return FileResponse(path, media_type=media_type, filename=download, headers=headers)


def create_app(
    *,
    factory: SessionFactory,
    root: Path = Path("runs/web"),
    limits: Limits | None = None,
    examples: Path | None = Path("examples"),
    profile: str = "default",
    allowed_hosts: Collection[str] | None = LOOPBACK_NAMES,
) -> FastAPI:
    """The app. `factory(clip, run_folder)` makes a session's chat (agent.chat_session.ChatSession, or a stand-in);
    `allowed_hosts=None` accepts any Host header (for a deliberate non-loopback --host)."""
    limits = limits or Limits()
    store = SessionStore(root, factory, limits, examples)
    run_lock = threading.Lock()  # one graph run at a time in this process (see agent/web_turns.py)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        store.close_all()

    app = FastAPI(title="OpenAVS chat", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LocalOnly, allowed_hosts=allowed_hosts)
    app.state.store = store

    @app.exception_handler(WebError)
    async def web_error(_: Request, err: WebError) -> JSONResponse:
        return JSONResponse({"detail": err.message}, err.status, headers=COMMON_HEADERS)

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        nonce = new_nonce()
        csp = {"Content-Security-Policy": content_security_policy(nonce), "Cache-Control": "no-store"}
        return HTMLResponse(render_page(nonce), headers={**COMMON_HEADERS, **csp})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)  # no icon; an empty answer keeps a 404 out of the browser console

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {
            "profile": profile,
            "max_upload_bytes": limits.max_upload_bytes,
            "max_upload_mb": round(limits.max_upload_bytes / MB, 1),
            "max_clip_seconds": limits.max_clip_seconds,
            "max_message_chars": limits.max_message_chars,
        }

    @app.get("/api/examples")
    def examples_list() -> dict[str, list[str]]:
        return {"examples": store.example_names()}

    @app.post("/api/sessions", status_code=201)
    async def create_session(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            source = store.example_path((await _read_json(request)).get("example"))
            if source.stat().st_size > limits.max_upload_bytes:
                raise _too_large(limits.max_upload_bytes, "example")
            fill = _copy_example(source)
        elif content_type.startswith("multipart/form-data"):
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limits.max_upload_bytes + MULTIPART_OVERHEAD:
                raise _too_large(limits.max_upload_bytes)
            fill = _receive_upload(request)
        else:
            raise WebError(400, "send the clip as multipart/form-data (field 'clip') or JSON {\"example\": name}")
        session_id, folder = store.new_folder()
        try:
            clip = await fill(folder)
            session = await run_in_threadpool(store.open, session_id, folder, clip)
        except BaseException:
            store.discard(folder)  # a refused or failed clip leaves nothing behind
            raise
        return JSONResponse(_session_info(session), 201)

    def _copy_example(source: Path) -> Callable[[Path], Awaitable[Path]]:
        async def fill(folder: Path) -> Path:
            clip = folder / safe_clip_name(source.name)  # a copy: everything a session uses lies in its folder
            await run_in_threadpool(shutil.copyfile, source, clip)
            return clip

        return fill

    def _receive_upload(request: Request) -> Callable[[Path], Awaitable[Path]]:
        async def fill(folder: Path) -> Path:
            body = _limited(request, limits.max_upload_bytes + MULTIPART_OVERHEAD)
            try:
                form = await body.form(max_files=1, max_fields=4)
            except _TooLarge:
                raise _too_large(limits.max_upload_bytes) from None
            try:
                upload = form.get("clip")
                if not isinstance(upload, UploadFile):
                    raise WebError(400, "no file in the upload: send the video as the form field 'clip'")
                clip = folder / safe_clip_name(upload.filename)
                await run_in_threadpool(_copy_upload, upload.file, clip, limits.max_upload_bytes)
            finally:
                await form.close()
            return clip

        return fill

    @app.post("/api/sessions/{session_id}/messages")
    async def post_message(session_id: str, request: Request) -> Response:
        session = store.get(session_id)
        text = (await _read_json(request)).get("text")
        if not isinstance(text, str) or not text.strip():
            raise WebError(400, 'send {"text": "your question"}')
        if len(text) > limits.max_message_chars:
            raise WebError(400, f"the message is longer than {limits.max_message_chars} characters")
        if not session.lock.acquire(blocking=False):
            raise WebError(409, "this clip is still answering the previous message; wait for it to finish")
        try:
            turn = Turn(session, text.strip(), run_lock, links)
        except BaseException:
            session.lock.release()
            raise
        accept = request.headers.get("accept", "")
        if "application/json" in accept and "text/event-stream" not in accept:
            return JSONResponse(await run_in_threadpool(turn.collect), headers=COMMON_HEADERS)
        headers = {**COMMON_HEADERS, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(turn.sse(), media_type="text/event-stream", headers=headers)

    @app.get("/api/sessions/{session_id}/clip")
    def clip(session_id: str) -> FileResponse:
        session = store.get(session_id)
        media_type = VIDEO_TYPES.get(session.clip.suffix.lower(), "application/octet-stream")
        return _file(confined(session.folder, session.clip.resolve()), media_type, "clip")

    @app.get("/api/sessions/{session_id}/overlay.mp4")
    def overlay(session_id: str) -> FileResponse:
        session = store.get(session_id)
        return _file(output_path(session, "overlay", "overlay.mp4"), "video/mp4", "overlay")

    @app.get("/api/sessions/{session_id}/result.json")
    def result(session_id: str) -> FileResponse:
        session = store.get(session_id)
        return _file(output_path(session, "result", "result.json"), "application/json", "result", "result.json")

    @app.get("/api/sessions/{session_id}/masks.zip")
    def masks(session_id: str) -> FileResponse:
        session = store.get(session_id)
        return _file(write_masks_zip(session), "application/zip", "masks", f"{session.clip.stem}-masks.zip")

    @app.get("/api/sessions/{session_id}/trace.html")
    def trace(session_id: str) -> HTMLResponse:
        html = write_trace_page(store.get(session_id))
        return HTMLResponse(html, headers={**COMMON_HEADERS, "Content-Security-Policy": TRACE_CSP})

    @app.get("/api/sessions/{session_id}/history")
    def history(session_id: str) -> dict[str, Any]:
        session = store.get(session_id)
        return {"id": session.id, "clip": session.clip.name, "messages": session.chat.history()}

    return app


def chat_factory(
    profile: str,
    device: str | None,
    llm: str | None,
    llm_base_url: str | None,
    cache: DiskCache | None = None,
    settings: AgentSettings | None = None,
) -> SessionFactory:
    """Real chats: ChatSessions sharing one model registry (each model loads once per process) and one cache;
    `settings` (tests: fewer rounds) replaces the profile's."""
    # Here rather than at the top: they load torch, transformers and LangGraph (seconds), which `--help` and a bad
    # option need not wait for.
    from agent.chat_session import ChatSession
    from tools.models.registry import ModelRegistry

    registry = ModelRegistry(device)

    def make(clip: Path, out: Path) -> ChatSession:
        return ChatSession(
            clip,
            profile=profile,
            llm=llm,
            llm_base_url=llm_base_url,
            out=out,
            registry=registry,
            cache=cache,
            settings=settings,
        )

    return make


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m agent.web", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--profile", default="default", choices=PROFILE_NAMES, help="model set (default: default)")
    parser.add_argument("--device", help="cpu | cuda | cuda:N | mps (default: cuda, then mps, then cpu)")
    parser.add_argument("--llm", help="chat model name (OpenAI-compatible)")
    parser.add_argument("--llm-base-url", help="base URL of an OpenAI-compatible server (or OPENAI_BASE_URL)")
    parser.add_argument("--examples", default="examples", help="folder of example clips to pick (default examples)")
    parser.add_argument("--runs", default="runs/web", help="folder of session folders (default runs/web)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload in MB (default 200)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="longest clip in seconds (default 120)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the captions/LLM cache")
    return parser


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on host:port for uvicorn to serve on; InputError when it cannot be bound (the port is
    taken, the address is not this machine's), so that the app never announces an address it does not serve."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need not wait
    try:
        sock.bind((host.strip("[]"), port))
        sock.listen()  # connections wait in the backlog from here on, so the banner's address already answers
    except OSError as err:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.max_upload_mb <= 0 or args.max_seconds <= 0 or not 0 < args.port < 65536:
            raise InputError("--max-upload-mb and --max-seconds must be positive, --port in 1..65535")
        require_folder_path(Path(args.runs), "--runs")
        cache = None if args.no_cache else open_cache()
        sock = listening_socket(args.host, args.port)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    loopback = is_loopback(args.host)
    if not loopback:
        print(f"warning: serving on {args.host}: anyone who can reach it can upload clips and run models",
              file=sys.stderr)  # fmt: skip
    import uvicorn

    app = create_app(
        factory=chat_factory(args.profile, args.device, args.llm, args.llm_base_url, cache),
        root=Path(args.runs),
        limits=Limits(max_upload_bytes=int(args.max_upload_mb * MB), max_clip_seconds=args.max_seconds),
        examples=Path(args.examples),
        profile=args.profile,
        allowed_hosts=LOOPBACK_NAMES if loopback else None,
    )
    url_host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host  # IPv6
    print(f"OpenAVS chat on http://{url_host}:{args.port}/ (profile {args.profile}); Ctrl-C stops it", file=sys.stderr)
    with sock, contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises Ctrl-C once it has shut down
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
