"""What a web session serves: its files by fixed names, each confined to the session folder.

The chat reports where its outputs are (ChatSession.outputs()); those paths are still checked, as are links inside
the run folder, so neither a confused chat nor a symlink can make the app serve a file from elsewhere.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from agent import trace as trace_page
from agent.web_store import WebError, WebSession, confined
from tools.runfiles import atomic_path, write_text_atomic

TRACE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # as agent/trace.py's page declares


def output_path(session: WebSession, key: str, default: str) -> Path | None:
    """A file the chat reports (or its usual name in the run folder), only if it is inside the session folder."""
    value = session.chat.outputs().get(key) or Path(session.chat.run_dir) / default
    if isinstance(value, list | tuple):
        return None
    return confined(session.folder, Path(value).resolve())


def mask_files(session: WebSession) -> list[Path]:
    """The mask PNGs of the session's latest answer, each confined to the session folder."""
    value = session.chat.outputs().get("masks")
    if isinstance(value, list | tuple):
        candidates = [Path(v) for v in value]
    else:
        folder = Path(value) if value else Path(session.chat.run_dir) / "masks"
        candidates = sorted(folder.glob("*.png")) if folder.is_dir() else []
    files = [confined(session.folder, p.resolve()) for p in candidates]
    return [p for p in files if p is not None and p.suffix == ".png"]


def links(session: WebSession) -> dict[str, str]:
    """URLs of what the session has to show now; the turn count busts the browser's cache of changed files."""
    base, version = f"/api/sessions/{session.id}", f"?v={session.turns}"
    found = {"clip": f"{base}/clip", "history": f"{base}/history"}
    if output_path(session, "overlay", "overlay.mp4"):
        found["overlay"] = f"{base}/overlay.mp4{version}"
    if mask_files(session):
        found["masks"] = f"{base}/masks.zip{version}"
    if output_path(session, "result", "result.json"):
        found["result"] = f"{base}/result.json{version}"
    if confined(session.folder, (Path(session.chat.run_dir) / "trace.jsonl").resolve()):
        found["trace"] = f"{base}/trace.html{version}"
    return found


def write_masks_zip(session: WebSession) -> Path:
    """masks.zip in the session folder, written now from the latest masks (PNGs are stored, not recompressed)."""
    files = mask_files(session)
    if not files:
        raise WebError(404, "no masks yet: ask a question first")
    target = session.folder / "masks.zip"
    try:
        with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for path in files:
                archive.write(path, arcname=path.name)
    except FileNotFoundError:
        raise WebError(409, "the masks are being rewritten by a running answer; try again when it is done") from None
    return target


def write_trace_page(session: WebSession) -> str:
    """The run's trace page, rendered by agent.trace and kept beside the trace as trace.html."""
    run_dir = Path(session.chat.run_dir)
    if confined(session.folder, (run_dir / "trace.jsonl").resolve()) is None:
        raise WebError(404, "no trace yet: ask a question first")
    html = trace_page.render_page(run_dir)
    write_text_atomic(run_dir / "trace.html", html)
    return html
