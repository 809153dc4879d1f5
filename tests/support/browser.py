"""Headless Chromium (Debian's chromium + chromium-driver) with a WAV file as its microphone."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def chromium(microphone_wav: Path) -> webdriver.Chrome:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if binary is None or driver is None:
        raise RuntimeError("chromium and chromium-driver are not installed: run `bash .ci/run`")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        # The servers under test announce 127.0.0.1 only (VA_ICE_ADDRESSES), which Chromium skips unless told.
        "--allow-loopback-in-peer-connection",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone_wav}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)
