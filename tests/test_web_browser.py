"""The web app end to end in headless Chromium: upload a clip, ask, see the answer and the overlay, get the masks.

The app (agent/web.py with real ChatSessions on the tiny profile) runs under uvicorn in a thread on a free
loopback port; Selenium drives Debian's chromium and chromedriver. Without them the test is skipped, or fails
when CI is set, since CI installs them (.ci/run).
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from agent import web
from agent.profiles import agent_profile
from agent.web_store import Limits
from tests.clipfactory import write_test_clip
from tools.runfiles import read_mask_png

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = "chromium and chromedriver not installed (apt-get install chromium chromium-driver)"
# Headless on this kind of machine: without the networking switches chromium's own background connections are
# refused in bulk and slow every page; a fresh profile folder per test keeps runs independent.
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,900",
)  # fmt: skip
ONE_ROUND = agent_profile("tiny").model_copy(update={"max_rounds": 1, "device": "cpu"})
ANSWER_TIMEOUT_S = 90.0  # the tiny models load in seconds, but the cores are shared with the rest of the suite


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[str]:
    """The app on a free loopback port, stopped after the test."""
    app = web.create_app(
        factory=web.chat_factory("tiny", "cpu", None, None, settings=ONE_ROUND),
        root=tmp_path / "web",
        limits=Limits(max_upload_bytes=5 * 1024 * 1024, max_clip_seconds=10.0),
        examples=None,
        profile="tiny",
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="web-app", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the web app did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def require_chromium() -> None:
    """Skip (or, under CI, fail) with one clear line when chromium or chromedriver is missing."""
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        if os.environ.get("CI"):
            pytest.fail(f"{MISSING}; CI must have them")
        pytest.skip(MISSING)


@pytest.fixture
def browser(tmp_path: Path):
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def ask(browser, text: str) -> str:
    """Send `text` from the page and return the answer shown (fails with the page's error line if the turn did)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    done = len(browser.find_elements(By.CSS_SELECTOR, "#log .answer.final, #log .failed"))
    browser.find_element(By.ID, "question").send_keys(text)
    browser.find_element(By.ID, "send").click()
    shown = WebDriverWait(browser, ANSWER_TIMEOUT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#log .answer.final, #log .failed")[done:]
    )[0]
    assert "answer" in shown.get_attribute("class"), f"the turn failed: {shown.text}"
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "send").is_enabled())  # the stream has ended
    assert shown.text.strip()
    return shown.text


def test_upload_ask_see_overlay_and_download_masks(app_url: str, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    clip = write_test_clip(tmp_path / "barking dog.mp4", seconds=2.0, size=(64, 48))
    browser.get(app_url + "/")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.find_element(By.ID, "limits").text.startswith("Clips up to 5 MB"))
    # A bad upload: one clear line on the page, and no session.
    (tmp_path / "notes.mp4").write_text("these are notes, not a video")
    browser.find_element(By.ID, "file").send_keys(str(tmp_path / "notes.mp4"))
    browser.find_element(By.ID, "upload").click()
    wait.until(ec.visibility_of_element_located((By.ID, "error")))
    assert browser.find_element(By.ID, "error").text.startswith("notes.mp4: not a readable video file")
    assert browser.find_element(By.ID, "clip-name").text == "no clip yet"

    browser.find_element(By.ID, "file").send_keys(str(clip))
    browser.find_element(By.ID, "upload").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "clip-name"), "barking_dog.mp4 (2.0 s)"))
    assert not browser.find_element(By.ID, "error").is_displayed()

    # A question (answered from the audio), then a request that segments (masks and overlay).
    first = ask(browser, "What is making the sound?")
    assert "making the sound" in first
    ask(browser, "Segment the sounding objects")
    assert [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#log .msg.user")] == [
        "What is making the sound?",
        "Segment the sounding objects",
    ]

    wait.until(lambda d: "overlay.mp4" in (d.find_element(By.ID, "player").get_attribute("src") or ""))
    overlay = httpx.get(browser.find_element(By.ID, "player").get_attribute("src"), timeout=10)
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "video/mp4" and overlay.content
    # The browser itself loaded it (metadata at least) without a media error.
    wait.until(lambda d: d.execute_script("const v = document.getElementById('player'); return v.readyState >= 1"))
    assert browser.execute_script("return document.getElementById('player').error") is None

    link = wait.until(lambda d: d.find_element(By.ID, "masks-link").get_attribute("href"))
    masks = httpx.get(link, timeout=10)
    assert masks.status_code == 200 and masks.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(masks.content)) as archive:
        names = sorted(archive.namelist())
        assert names == ["barking_dog_1.png", "barking_dog_2.png"]
        archive.extractall(tmp_path / "masks")
    assert read_mask_png(tmp_path / "masks" / names[0]).shape == (48, 64)
    trace = httpx.get(browser.find_element(By.ID, "trace-link").get_attribute("href"), timeout=30)
    assert trace.status_code == 200 and "Run trace" in trace.text
    browser.save_screenshot(str(tmp_path / "web_page.png"))
    assert (tmp_path / "web_page.png").stat().st_size > 0


def test_missing_chromium_skips_or_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(globals(), "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"chromium and chromedriver not installed \(apt-get install"):
        require_chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have them"):
        require_chromium()
