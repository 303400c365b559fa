"""The web app's API (agent/web.py) with FastAPI's TestClient and a stand-in chat: uploads and their limits, example
picks, messages, downloads, and that nothing outside a session's folder can be reached."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import anyio
import pytest
from fastapi.testclient import TestClient

import agent.web as web
from agent.profiles import agent_profile
from agent.web_store import SESSION_ID, Limits, safe_clip_name
from tests.clipfactory import write_test_clip
from tests.web_fakes import FakeChat
from tools.errors import InputError
from tools.runfiles import read_mask_png

REPO = Path(__file__).resolve().parents[1]

LOOPBACK = "http://127.0.0.1"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "good": write_test_clip(folder / "dog bark.mp4", seconds=1.5, size=(64, 48)),
        "long": write_test_clip(folder / "long.mp4", seconds=4.0, fps=5.0, size=(32, 24)),
    }


class Rig:
    """An app over tmp folders with FakeChat sessions; `chats` holds every chat it made."""

    def __init__(self, tmp: Path, clips: dict[str, Path], **kwargs) -> None:
        self.root = tmp / "web"
        self.examples = tmp / "examples"
        self.examples.mkdir(exist_ok=True)
        (self.examples / "metronome.mp4").write_bytes(clips["good"].read_bytes())
        (self.examples / "notes.txt").write_text("not a clip")
        self.chats: list[FakeChat] = []
        self.chat_kwargs = kwargs.pop("chat_kwargs", {})
        limits = kwargs.pop("limits", Limits(max_upload_bytes=2 * 1024 * 1024, max_clip_seconds=3.0))
        self.app = web.create_app(factory=self.make, root=self.root, limits=limits, examples=self.examples, **kwargs)

    def make(self, clip: Path, out: Path) -> FakeChat:
        chat = FakeChat(clip, out, **self.chat_kwargs)
        self.chats.append(chat)
        return chat

    def folders(self) -> list[Path]:
        return sorted(self.root.iterdir()) if self.root.exists() else []


@pytest.fixture
def rig(tmp_path: Path, clips: dict[str, Path]) -> Rig:
    return Rig(tmp_path, clips)


@pytest.fixture
def client(rig: Rig) -> Iterator[TestClient]:
    with TestClient(rig.app, base_url=LOOPBACK) as client:
        yield client


def upload(client: TestClient, path: Path, name: str | None = None, field: str = "clip"):
    return client.post("/api/sessions", files={field: (name or path.name, path.read_bytes(), "video/mp4")})


def raw_get(app, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written: httpx resolves dot segments before sending, a hostile client need not."""
    messages: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": unquote(path), "raw_path": path.encode(), "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    anyio.run(app, scope, receive, send)
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")


def sse_events(text: str) -> list[dict]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_page_is_self_contained_with_a_nonce_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<script nonce="{nonce}">' in response.text
    assert "http://" not in response.text and "https://" not in response.text  # no external assets
    assert client.get("/api/config").json()["max_clip_seconds"] == 3.0
    assert client.get("/api/examples").json() == {"examples": ["metronome.mp4"]}


def test_upload_ask_and_download_everything(client: TestClient, rig: Rig, clips: dict[str, Path]) -> None:
    response = upload(client, clips["good"])
    assert response.status_code == 201, response.text
    session = response.json()
    assert SESSION_ID.fullmatch(session["id"]) and session["clip"] == "dog_bark.mp4"
    assert (rig.root / session["id"] / "dog_bark.mp4").read_bytes() == clips["good"].read_bytes()
    base = f"/api/sessions/{session['id']}"
    clip = client.get(session["links"]["clip"])
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4"
    assert client.get(f"{base}/overlay.mp4").status_code == 404  # nothing until the first answer
    assert "ask a question first" in client.get(f"{base}/masks.zip").json()["detail"]

    response = client.post(f"{base}/messages", json={"text": "what is making the sound?"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert [e["kind"] for e in events] == ["progress", "tool", "token", "answer", "outputs"]
    assert events[3]["text"] == "a dog is barking"
    assert events[1]["data"]["path"].endswith("masks")  # paths in event data arrive as strings
    links = events[-1]["data"]
    assert {"overlay", "masks", "result", "trace", "clip", "history"} <= set(links)

    overlay = client.get(links["overlay"])
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "video/mp4"
    assert overlay.content == clips["good"].read_bytes()
    masks = client.get(links["masks"])
    assert masks.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(masks.content)) as archive:
        assert sorted(archive.namelist()) == ["dog_bark_1.png", "dog_bark_2.png"]
        archive.extract("dog_bark_1.png", rig.root.parent)
    assert read_mask_png(rig.root.parent / "dog_bark_1.png").sum() == 400
    assert (rig.root / session["id"] / "masks.zip").is_file()  # written on demand, inside the session folder
    assert client.get(links["result"]).json()["clip"]["name"] == "dog_bark.mp4"
    trace = client.get(links["trace"])
    assert trace.status_code == 200 and "Run trace" in trace.text
    assert trace.headers["content-security-policy"].startswith("default-src 'none'")
    history = client.get(links["history"]).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]


def test_messages_as_one_json_object(client: TestClient, clips: dict[str, Path]) -> None:
    base = f"/api/sessions/{upload(client, clips['good']).json()['id']}"
    body = client.post(f"{base}/messages", json={"text": "what?"}, headers={"Accept": "application/json"}).json()
    assert body["answer"] == "a dog is barking" and body["error"] is None
    assert body["outputs"]["masks"].startswith(f"{base}/masks.zip")


@pytest.mark.parametrize(
    ("content", "name", "status", "says"),
    [
        (b"hello, I am text", "clip.mp4", 400, "not a readable video"),
        (b"", "clip.mp4", 400, "empty"),
        (b"\x00" * 100, "clip.webm", 400, "clip.webm"),
    ],
    ids=["text", "empty", "zeros"],
)
def test_bad_uploads_are_refused_and_leave_nothing(
    client: TestClient, rig: Rig, content: bytes, name: str, status: int, says: str
) -> None:
    response = client.post("/api/sessions", files={"clip": (name, content, "video/mp4")})
    assert response.status_code == status and says in response.json()["detail"]
    assert "\n" not in response.json()["detail"] and str(rig.root) not in response.json()["detail"]
    assert rig.folders() == []


def test_too_long_and_wrongly_sent_uploads(client: TestClient, rig: Rig, clips: dict[str, Path]) -> None:
    response = upload(client, clips["long"])
    assert response.status_code == 400
    assert response.json()["detail"] == "the clip is 4.0 s long; the limit is 3 s"
    response = upload(client, clips["good"], field="video")
    assert response.status_code == 400 and "form field 'clip'" in response.json()["detail"]
    response = client.post("/api/sessions", content=b"raw", headers={"Content-Type": "video/mp4"})
    assert response.status_code == 400
    garbled = {"Content-Type": "multipart/form-data; boundary=x"}
    assert client.post("/api/sessions", content=b"garbage", headers=garbled).status_code == 400
    two = [("clip", ("a.mp4", clips["good"].read_bytes())), ("clip", ("b.mp4", clips["good"].read_bytes()))]
    assert client.post("/api/sessions", files=two).status_code == 400
    assert rig.folders() == []


def test_too_large_uploads_get_413_declared_or_streamed(tmp_path: Path, clips: dict[str, Path]) -> None:
    rig = Rig(tmp_path, clips, limits=Limits(max_upload_bytes=4096, max_clip_seconds=3.0))
    with TestClient(rig.app, base_url=LOOPBACK) as client:
        response = upload(client, clips["good"])  # declares its length: refused before the body is read
        assert response.status_code == 413 and response.json()["detail"] == "the file is larger than the 4 KB limit"
        boundary = "b0undary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="clip"; filename="a.mp4"\r\n\r\n'.encode()

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield head
            for _ in range(200):
                yield b"\x00" * 1024
            yield f"\r\n--{boundary}--\r\n".encode()

        response = client.post(
            "/api/sessions", content=chunks(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        assert response.status_code == 413
        # A body just over the limit in its file part but under it with overhead: caught while copying.
        response = client.post("/api/sessions", files={"clip": ("a.mp4", b"\x00" * 4097, "video/mp4")})
        assert response.status_code == 413
    assert rig.folders() == []


def test_pick_an_example_copies_it_into_the_session(client: TestClient, rig: Rig) -> None:
    response = client.post("/api/sessions", json={"example": "metronome.mp4"})
    assert response.status_code == 201
    folder = rig.root / response.json()["id"]
    assert (folder / "metronome.mp4").read_bytes() == (rig.examples / "metronome.mp4").read_bytes()
    assert rig.chats[-1].clip == folder / "metronome.mp4"
    for name in ["../metronome.mp4", "/etc/passwd", "notes.txt", "nope.mp4", 5, None]:
        response = client.post("/api/sessions", json={"example": name})
        assert response.status_code == 400 and "no example called" in response.json()["detail"], name
    assert client.post("/api/sessions", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert len(rig.folders()) == 1


def test_traversal_and_malformed_ids_reach_nothing(client: TestClient, rig: Rig, clips: dict[str, Path]) -> None:
    session = upload(client, clips["good"]).json()
    base = f"/api/sessions/{session['id']}"
    client.post(f"{base}/messages", json={"text": "go"})
    for url in [
        "/api/sessions/../../etc/passwd",
        "/api/sessions/..%2F..%2Fetc%2Fpasswd/history",
        "/api/sessions/%2e%2e/result.json",
        f"{base}/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        f"{base}/../../../etc/passwd",
        f"{base}/clip/../../../etc/passwd",
        f"/api/sessions/{session['id']}%2F..%2F..%2Fetc/history",
        f"/api/sessions/a/{session['id']}/history",
        "/api/sessions/short/history",
        "/etc/passwd",
        "/..%2F..%2Fetc%2Fpasswd",
    ]:
        response = client.get(url)
        assert response.status_code in (400, 404, 405), url
        assert "root:" not in response.text, url
        status, body = raw_get(rig.app, url)
        assert status == 404 and b"root:" not in body, url


def test_links_out_of_the_session_folder_are_not_followed(
    client: TestClient, rig: Rig, clips: dict[str, Path], tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    session = upload(client, clips["good"]).json()
    base = f"/api/sessions/{session['id']}"
    client.post(f"{base}/messages", json={"text": "go"})
    run = rig.chats[-1].run_dir
    for name in ["result.json", "overlay.mp4", "masks/dog_bark_2.png"]:
        (run / name).unlink()
        os.symlink(secret, run / name)
    assert client.get(f"{base}/result.json").status_code == 404
    assert client.get(f"{base}/overlay.mp4").status_code == 404
    with zipfile.ZipFile(io.BytesIO(client.get(f"{base}/masks.zip").content)) as archive:
        assert archive.namelist() == ["dog_bark_1.png"]
    # The chat's own report is not trusted either: a path outside the folder is refused.
    rig.chats[-1].outputs = lambda: {"result": secret, "overlay": secret}
    assert client.get(f"{base}/result.json").status_code == 404
    assert client.get(f"{base}/overlay.mp4").status_code == 404


def test_one_turn_at_a_time_per_session(tmp_path: Path, clips: dict[str, Path]) -> None:
    gate = threading.Event()
    rig = Rig(tmp_path, clips, chat_kwargs={"gate": gate})
    with TestClient(rig.app, base_url=LOOPBACK) as client:
        base = f"/api/sessions/{upload(client, clips['good']).json()['id']}"
        first: dict = {}
        worker = threading.Thread(
            target=lambda: first.update(
                client.post(f"{base}/messages", json={"text": "1"}, headers={"Accept": "application/json"}).json()
            )
        )
        worker.start()
        try:
            assert rig.chats[0].started.wait(10)
            busy = client.post(f"{base}/messages", json={"text": "2"})
            assert busy.status_code == 409 and "still answering" in busy.json()["detail"]
        finally:
            gate.set()
            worker.join(10)
        assert first["answer"] == "a dog is barking"
        again = client.post(f"{base}/messages", json={"text": "3"}, headers={"Accept": "application/json"})
        assert again.json()["answer"] == "a dog is barking"


def test_a_failed_turn_is_one_line_and_frees_the_session(tmp_path: Path, clips: dict[str, Path]) -> None:
    rig = Rig(tmp_path, clips, chat_kwargs={"fail": InputError("the planner gave up")})
    with TestClient(rig.app, base_url=LOOPBACK) as client:
        base = f"/api/sessions/{upload(client, clips['good']).json()['id']}"
        events = sse_events(client.post(f"{base}/messages", json={"text": "1"}).text)
        assert [e["kind"] for e in events] == ["progress", "error", "outputs"]
        assert events[1]["text"] == "the planner gave up"
        rig.chats[0].fail = RuntimeError("boom\nsecond line")
        body = client.post(f"{base}/messages", json={"text": "2"}, headers={"Accept": "application/json"}).json()
        assert body["error"] == "internal error: RuntimeError: boom"


def test_message_validation(client: TestClient, clips: dict[str, Path]) -> None:
    base = f"/api/sessions/{upload(client, clips['good']).json()['id']}"
    assert client.post(f"{base}/messages", json={"text": "  "}).status_code == 400
    assert client.post(f"{base}/messages", json={"text": "x" * 2001}).status_code == 400
    assert client.post(f"{base}/messages", json=["text"]).status_code == 400
    assert client.post(f"{base}/messages", content=b"x" * 70000).status_code == 413
    assert client.post("/api/sessions/AAAAAAAAAAAAAAAAAAAAAAAA/messages", json={"text": "hi"}).status_code == 404


def test_host_and_origin_are_checked(client: TestClient, clips: dict[str, Path]) -> None:
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400
    assert client.get("/", headers={"Host": "localhost:8000"}).status_code == 200
    response = client.post(
        "/api/sessions", json={"example": "metronome.mp4"}, headers={"Origin": "http://evil.example"}
    )
    assert response.status_code == 403
    response = client.post("/api/sessions", json={"example": "metronome.mp4"}, headers={"Origin": LOOPBACK})
    assert response.status_code == 201


def test_least_recently_used_sessions_are_closed(tmp_path: Path, clips: dict[str, Path]) -> None:
    rig = Rig(tmp_path, clips, limits=Limits(max_sessions=1, max_clip_seconds=3.0))
    with TestClient(rig.app, base_url=LOOPBACK) as client:
        first = upload(client, clips["good"]).json()["id"]
        second = upload(client, clips["good"]).json()["id"]
        assert client.get(f"/api/sessions/{first}/history").status_code == 404 and rig.chats[0].closed
        assert client.get(f"/api/sessions/{second}/history").status_code == 200
    assert rig.chats[1].closed  # closed when the app stops


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_binds_to_loopback_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict = {}
    monkeypatch.setattr(web, "chat_factory", lambda *a: FakeChat)

    def serve(server, sockets) -> None:  # in place of uvicorn.Server.run: what it would serve, and where
        seen.update(app=server.config.app, address=sockets[0].getsockname())

    monkeypatch.setattr("uvicorn.Server.run", serve)
    port = str(_free_port())
    assert web.main(["--runs", str(tmp_path / "web"), "--port", port]) == 0
    assert seen["address"] == ("127.0.0.1", int(port))
    with TestClient(seen["app"], base_url="http://10.1.2.3") as client:
        assert client.get("/").status_code == 400  # a loopback app answers loopback names only
    assert web.main(["--host", "0.0.0.0", "--runs", str(tmp_path / "web"), "--port", port]) == 0
    with TestClient(seen["app"], base_url="http://10.1.2.3") as client:
        assert client.get("/").status_code == 200
    assert web.main(["--max-seconds", "0"]) == 2
    assert web.is_loopback("::1") and web.is_loopback("localhost") and not web.is_loopback("0.0.0.0")


def test_a_port_it_cannot_listen_on_is_one_line_before_any_banner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert web.main(["--runs", str(tmp_path / "web"), "--port", port, "--no-cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1
    (tmp_path / "file").write_text("not a folder")
    assert web.main(["--runs", str(tmp_path / "file"), "--port", port, "--no-cache"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_ctrl_c_stops_the_server_cleanly(tmp_path: Path) -> None:
    port = str(_free_port())
    command = [sys.executable, "-m", "agent.web", "--profile", "tiny", "--port", port, "--runs", str(tmp_path)]
    server = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert "OpenAVS chat on http://127.0.0.1:" in server.stderr.readline()  # printed once it listens
        with socket.create_connection(("127.0.0.1", int(port)), timeout=30):
            pass
        server.send_signal(signal.SIGINT)
        _, rest = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == 0 and "Traceback" not in rest, rest


def test_clip_names_are_sanitised() -> None:
    assert safe_clip_name("../../etc/passwd") == "passwd.mp4"
    assert safe_clip_name("..\\..\\x y.MOV") == "x_y.mov"
    assert safe_clip_name("..") == "clip.mp4"
    assert safe_clip_name(None) == "clip.mp4"


def test_real_chat_session_through_the_api(tmp_path: Path, clips: dict[str, Path]) -> None:
    """The app with agent.chat_session.ChatSession on the tiny profile (the browser test does this too, but it
    is skipped where chromium is missing)."""
    one_round = agent_profile("tiny").model_copy(update={"max_rounds": 1, "device": "cpu"})
    factory = web.chat_factory("tiny", "cpu", None, None, settings=one_round)
    app = web.create_app(factory=factory, root=tmp_path / "web", examples=None)
    with TestClient(app, base_url=LOOPBACK) as client:
        session = upload(client, clips["good"]).json()
        base = f"/api/sessions/{session['id']}"
        body = client.post(
            f"{base}/messages", json={"text": "segment the sounding objects"}, headers={"Accept": "application/json"}
        ).json()
        assert body["error"] is None and body["answer"], body
        assert {"overlay", "masks", "result", "trace"} <= set(body["outputs"])
        with zipfile.ZipFile(io.BytesIO(client.get(body["outputs"]["masks"]).content)) as archive:
            assert archive.namelist() and all(name.startswith("dog_bark_") for name in archive.namelist())
        assert client.get(body["outputs"]["overlay"]).headers["content-type"] == "video/mp4"
        assert "Run trace" in client.get(body["outputs"]["trace"]).text
        assert [m["role"] for m in client.get(f"{base}/history").json()["messages"]] == ["user", "assistant"]
