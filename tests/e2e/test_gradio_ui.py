"""The Gradio voice chat in a real headless Chromium whose microphone plays espeak-ng speech.

The UI negotiates through Gradio's own route, not `/webrtc/offer`; this shows the session binding,
the live reply text and resuming a session work on that path too.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from benchmarks.server import ServerProcess
from benchmarks.speech import RATE, speak
from tests.support.browser import chromium
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    # Two workers, as `serve --model tiny` runs on two cores: the page, Gradio's queue and the offer all
    # pass through the proxy and must reach the one worker that served the page.
    return servers.start("ui", {"VA_MAX_NEW_TOKENS": "16", "VA_WORKERS": "2"})


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Chromium loops this file: one sentence, then silence long enough to end the turn."""
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    silence = np.zeros(RATE, dtype=np.float32)
    sf.write(
        path, np.concatenate([silence, speak("Hello there, how are you today?"), silence, silence]), RATE
    )
    return path


def click_button(browser: WebDriver, label: str) -> bool:
    """Click the microphone component's button with this label; the component re-renders, so look again."""
    try:
        microphone = browser.find_element(By.ID, "microphone")
        button = next(b for b in microphone.find_elements(By.TAG_NAME, "button") if label in b.text)
        button.click()
    except (StopIteration, StaleElementReferenceException):
        return False
    return True


def start_talking(browser: WebDriver) -> None:
    WebDriverWait(browser, 10).until(lambda b: click_button(b, "Access Microphone"))
    WebDriverWait(browser, 10).until(lambda b: click_button(b, "Record"))


def session_box(browser: WebDriver) -> str:
    return str(browser.find_element(By.CSS_SELECTOR, "#session-id textarea").get_attribute("value"))


def visible(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable() and not ch.isspace())


def user_turns_shown(browser: WebDriver) -> int:
    return len(re.findall(r"turn \d+ \(", browser.find_element(By.ID, "chat").text))


def test_the_ui_talks_shows_the_session_and_resumes_it(
    server: ServerProcess, microphone: Path, tmp_path: Path
) -> None:
    browser = chromium(microphone)
    try:
        browser.get(server.url)
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "microphone"))
        start_talking(browser)
        WebDriverWait(browser, 30).until(lambda b: re.fullmatch(r"[0-9a-f]{32}", session_box(b)))
        session_id = session_box(browser)
        WebDriverWait(browser, 30).until(
            lambda b: user_turns_shown(b) >= 1 and "turn 0" in b.find_element(By.ID, "chat").text
        )
        time.sleep(1.0)  # let the first reply stream in
        browser.save_screenshot(str(tmp_path / "ui.png"))

        stored = httpx.get(f"{server.url}/api/sessions/{session_id}").json()["turns"]
        assert stored and stored[0]["reply_text"]
        # The tiny model's random bytes include control characters that a page does not render.
        assert visible(stored[0]["reply_text"]) in visible(browser.find_element(By.ID, "chat").text)
        count_before = len(stored)

        # Come back later: a fresh page, the same session id pasted in, and the history is there.
        browser.get(server.url)
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "microphone"))
        box = browser.find_element(By.CSS_SELECTOR, "#session-id textarea")
        box.send_keys(session_id)
        start_talking(browser)
        WebDriverWait(browser, 30).until(lambda b: user_turns_shown(b) >= count_before + 1)
        assert session_box(browser) == session_id
        assert "Unknown session" not in browser.find_element(By.ID, "chat").text
    finally:
        browser.quit()
    resumed = httpx.get(f"{server.url}/api/sessions/{session_id}").json()["turns"]
    assert len(resumed) > count_before
