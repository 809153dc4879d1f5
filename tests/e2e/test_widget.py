"""The embeddable widget on a stranger's page, in a real headless Chromium whose microphone plays speech.

A host page on one origin (a small HTTP server here) embeds `widget.js` from the assistant's server on
another origin, as a shop would. The visitor talks two turns and reads the replies as captions, reloads
the page and goes on in the same session, and the widget reconnects by itself when the server restarts;
the same page on an origin that the site key does not allow is refused and says so. Screenshots of the
states are composed into one image (`VA_SCREENSHOTS_DIR`).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from PIL import Image, ImageDraw, ImageFont
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, speak
from tests.support.browser import chromium
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e

ADMIN = "widget-admin-token"
WIDGET = "document.querySelector('voice-assistant-widget')"
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>A shop</title>
<style>
  body {{ margin: 40px; background: #fbf7ef; font-family: Georgia, serif; }}
  /* Rules that would wreck a widget living in the page's own DOM. */
  * {{ font-size: 22px !important; letter-spacing: 2px !important; }}
  button {{ background: hotpink !important; border-radius: 0 !important; }}
  p {{ display: inline !important; }}
</style></head>
<body><h1>The corner shop</h1><p>Fresh bread every morning.</p> <button>Buy</button>
<script src="{server}/widget.js" data-site-key="shop"></script>
</body></html>"""


class HostPages:
    """The shop's own web server: serves the page that embeds the widget, on its own origin."""

    def __init__(self) -> None:
        self.html = b""
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(pages.html)))
                self.end_headers()
                self.wfile.write(pages.html)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/shop.html"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def pages() -> Iterator[HostPages]:
    host = HostPages()
    yield host
    host.close()


@pytest.fixture(scope="module")
def server(servers: Servers, pages: HostPages) -> ServerProcess:
    # The shop's page is allowed on 127.0.0.1; `localhost` is another origin, allowed only for a partner.
    sites = {"shop": [f"http://127.0.0.1:{pages.port}"], "partner": [f"http://localhost:{pages.port}"]}
    process = servers.start(
        "widget",
        {
            "VA_SITES": json.dumps(sites),
            "VA_ADMIN_TOKEN": ADMIN,
            "VA_MAX_NEW_TOKENS": "16",
            "VA_WEBRTC_SPEECH": "true",
        },
    )
    pages.html = PAGE.format(server=process.url).encode()
    return process


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chromium loops this file from the start of each capture: silence while the widget connects, two
    sentences 3 s apart (two turns), and a long silence before it comes round again."""
    path = tmp_path_factory.mktemp("mic") / "visitor.wav"

    def silence(seconds: float) -> np.ndarray:
        return np.zeros(int(seconds * RATE), dtype=np.float32)

    audio = [
        silence(2.0),
        speak("Hello there, what can you do for me today?"),
        silence(3.0),
        speak("Tell me something nice about the weather."),
        silence(5.0),
    ]
    sf.write(path, np.concatenate(audio), RATE)
    return path


# -- the widget as the page sees it


def state(browser: WebDriver) -> str | None:
    value = browser.execute_script(f"return {WIDGET}?.getAttribute('state') ?? null")
    return str(value) if value is not None else None


def part_text(browser: WebDriver, part: str) -> str:
    return str(browser.execute_script(f"return {WIDGET}.shadowRoot.querySelector('[part={part}]').innerText"))


def wait_until(browser: WebDriver, seconds: float, condition: Callable[[WebDriver], object]) -> Any:
    return WebDriverWait(browser, seconds, poll_frequency=0.05).until(condition)


def click_microphone(browser: WebDriver) -> None:
    host = browser.find_element(By.TAG_NAME, "voice-assistant-widget")
    host.shadow_root.find_element(By.CSS_SELECTOR, "[part='button']").click()


def open_page(browser: WebDriver, url: str) -> None:
    browser.get(url)
    wait_until(browser, 10, lambda b: state(b) == "idle")


def visible(text: str) -> str:
    """What a page renders of a text: the tiny model's random bytes include unprintable characters."""
    return "".join(ch for ch in text if ch.isprintable() and not ch.isspace())


def stored_turns(server: ServerProcess, session_id: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = httpx.get(f"{server.url}/api/sessions/{session_id}").json()["turns"]
    return turns


def replied_turns(server: ServerProcess, session_id: str, count: int, seconds: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        turns = [turn for turn in stored_turns(server, session_id) if turn["reply_done_at"]]
        if len(turns) >= count:
            return turns
        time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} replied turns after {seconds} s")


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- screenshots


class StateShots:
    """A crop of the widget in each state, composed side by side into one labelled image."""

    def __init__(self) -> None:
        self.shots: list[tuple[str, Image.Image]] = []

    def take(self, browser: WebDriver, label: str) -> None:
        time.sleep(0.3)  # the button's colour changes in 0.15 s
        box = browser.execute_script(
            f"const r = {WIDGET}.getBoundingClientRect();"
            "return [r.left, r.top, r.right, r.bottom, innerWidth, innerHeight];"
        )
        left, top, right, bottom, width, height = (float(v) for v in box)
        image = Image.open(BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        scale = image.width / width
        margin = 24
        crop = (
            max(0, int((min(left, width - 380) - margin) * scale)),
            max(0, int((min(top, height - 300) - margin) * scale)),
            int(min(width, right + margin) * scale),
            int(min(height, bottom + margin) * scale),
        )
        self.shots.append((label, image.crop(crop)))

    def compose(self, path: Path) -> None:
        font = ImageFont.load_default(size=20)
        pad, caption = 16, 40
        width = sum(shot.width for _, shot in self.shots) + pad * (len(self.shots) + 1)
        height = max(shot.height for _, shot in self.shots) + caption + pad * 2
        sheet = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(sheet)
        x = pad
        for label, shot in self.shots:
            draw.text((x, pad), label, fill="#111827", font=font)
            sheet.paste(shot, (x, pad + caption))
            x += shot.width + pad
        path.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)


def screenshot_path(tmp_path: Path) -> Path:
    directory = os.environ.get("VA_SCREENSHOTS_DIR")
    return (Path(directory) if directory else tmp_path) / "widget-states.png"


def test_a_visitor_talks_through_the_widget_comes_back_and_strangers_are_refused(
    server: ServerProcess, pages: HostPages, microphone: Path, tmp_path: Path
) -> None:
    shots = StateShots()
    browser = chromium(microphone)
    try:
        # A shop's page embeds the widget from the assistant's server, another origin.
        open_page(browser, pages.url())
        shots.take(browser, "idle")
        button_color = browser.execute_script(
            f"return getComputedStyle({WIDGET}.shadowRoot.querySelector('[part=button]')).backgroundColor"
        )
        assert button_color == "rgb(37, 99, 235)", "the page's styles reached into the widget"

        click_microphone(browser)
        wait_until(browser, 15, lambda b: state(b) == "listening")
        shots.take(browser, "listening")
        session_id = browser.execute_script(f"return {WIDGET}.sessionId")
        assert re.fullmatch(r"[0-9a-f]{32}", str(session_id))

        wait_until(browser, 30, lambda b: state(b) == "speaking" and part_text(b, "captions").strip())
        shots.take(browser, "speaking, live captions")

        # Two turns: both replies are in the captions and both turns in the database.
        turns = replied_turns(server, session_id, 2, seconds=40)
        wait_until(
            browser,
            10,
            lambda b: all(visible(t["reply_text"]) in visible(part_text(b, "captions")) for t in turns[:2]),
        )
        timings = browser.execute_script(f"return {{...{WIDGET}.timings, origin: performance.timeOrigin}}")
        captions_at = {int(turn): at / 1000 for turn, at in timings["captions"].items()}
        to_caption = [captions_at[t["index"]] - epoch(t["speech_end"]) for t in turns[:2]]
        print(
            f"\nwidget: page load -> widget ready {timings['created'] - timings['origin']:.0f} ms; "
            f"click -> listening {timings['listening'] - timings['clicked']:.0f} ms; "
            "speech end (stored) -> first caption "
            + ", ".join(f"turn {i}: {delay:.3f} s" for i, delay in enumerate(to_caption))
        )
        assert 0 < timings["listening"] - timings["clicked"] < 10_000
        assert all(0 < delay < 5 for delay in to_caption)

        # The visitor comes back: the same session, which goes on.
        before = len(stored_turns(server, session_id))
        open_page(browser, pages.url())
        assert browser.execute_script(f"return {WIDGET}.sessionId") == session_id
        click_microphone(browser)
        wait_until(browser, 15, lambda b: state(b) == "listening")
        replied_turns(server, session_id, before + 1, seconds=30)
        assert browser.execute_script(f"return {WIDGET}.sessionId") == session_id

        # An allowed site still cannot list everyone's sessions: that needs the admin token.
        listing = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            f"fetch('{server.url}/api/sessions', {{headers: {{'X-Site-Key': 'shop'}}}})"
            ".then(async (r) => done([r.status, await r.json()]));"
        )
        assert listing[0] == 401 and "admin token" in listing[1]["error"]

        # The server goes away and comes back (a restart, a network drop): the widget reconnects by
        # itself, to the same session, and the conversation goes on.
        server.stop()
        wait_until(browser, 30, lambda b: state(b) == "connecting")
        assert "reconnecting" in part_text(browser, "status").lower()
        server.start()
        before = len(stored_turns(server, session_id))
        wait_until(browser, 30, lambda b: state(b) == "listening")
        replied_turns(server, session_id, before + 1, seconds=30)
        assert browser.execute_script(f"return {WIDGET}.sessionId") == session_id

        # The server's own demo page embeds the same widget: its own origin needs no allowed key.
        open_page(browser, f"{server.url}/demo")
        click_microphone(browser)
        wait_until(browser, 15, lambda b: state(b) == "listening")

        # The same page on an origin that the shop's key does not allow.
        open_page(browser, pages.url("localhost"))
        click_microphone(browser)
        wait_until(browser, 15, lambda b: state(b) == "error")
        status = part_text(browser, "status")
        assert f"origin http://localhost:{pages.port} is not allowed for this site key" in status
        shots.take(browser, "error: origin not allowed")
    finally:
        browser.quit()

    shots.compose(screenshot_path(tmp_path))
    admin = httpx.get(f"{server.url}/api/sessions", headers={"Authorization": f"Bearer {ADMIN}"}).json()
    assert session_id in [s["session_id"] for s in admin["sessions"]]
    assert httpx.get(f"{server.url}/api/sessions").status_code in {401, 403}
