"""The espeak-ng command line, shared by the espeak engine (audio) and Kokoro's phonemizer (IPA)."""

from __future__ import annotations

import shutil
import subprocess

from voice_assistant.tts.base import SynthesisError


def find_espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise SynthesisError(
            "espeak-ng is not installed: apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng"
        )
    return path


def run_espeak(executable: str, options: list[str], text: str) -> bytes:
    """Blocking: runs espeak-ng on `text` (read from stdin, so text that starts with '-' stays text)."""
    done = subprocess.run(
        [executable, *options, "--stdin"], input=text.encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise SynthesisError(f"espeak-ng {' '.join(options)} failed: {message}")
    return done.stdout
