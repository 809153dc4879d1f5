"""Real human speech that Debian and PyPI packages ship, read at run time (nothing is committed).

- The Asterisk core prompts (`asterisk-core-sounds-en-wav`, CC-BY-SA-3.0): 568 prompts read by one
  professional US voice at 8 kHz, with the transcript of each in `asterisk-core-sounds-en`'s
  `core-sounds-en.txt.gz`.
- The 30 s two-person phone conversation that the `pyannote-audio` wheel ships as its sample, with the
  timed, per-speaker utterances of `sample.stm` (installed with `pip install --no-deps pyannote-audio`:
  only the files are read, the package is never imported).

Everything comes back as float32 at 16 kHz (soxr), the rate the turn models hear.
"""

from __future__ import annotations

import functools
import gzip
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from benchmarks.speech import RATE

ASTERISK = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")


class MissingSpeech(RuntimeError):
    """A package that holds the recordings is not installed."""


def read_16k(path: Path) -> np.ndarray:
    samples, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = samples.mean(axis=1)
    return mono if rate == RATE else np.asarray(soxr.resample(mono, rate, RATE), dtype=np.float32)


@functools.cache
def asterisk_transcripts() -> dict[str, str]:
    """Prompt name (`auth-thankyou`, `digits/7`) -> what is said, for the prompts whose file is here;
    bracketed descriptions (`[ascending tones]`) are not speech and are left out."""
    if not ASTERISK_TRANSCRIPTS.exists() or not ASTERISK.is_dir():
        raise MissingSpeech("apt-get install asterisk-core-sounds-en-wav asterisk-core-sounds-en")
    found = {}
    for line in gzip.open(ASTERISK_TRANSCRIPTS, "rt", encoding="utf-8", errors="replace"):
        name, sep, text = line.partition(":")
        text = " ".join(text.split())
        if line.startswith(";") or not sep or not text or text.startswith("["):
            continue
        if (ASTERISK / f"{name.strip()}.wav").exists():
            found[name.strip()] = text
    return found


def asterisk_prompt(name: str) -> np.ndarray:
    """One prompt (`digits/7`, `auth-thankyou`) at 16 kHz."""
    path = ASTERISK / f"{name}.wav"
    if not path.exists():
        raise MissingSpeech(f"no Asterisk prompt {name!r} (apt-get install asterisk-core-sounds-en-wav)")
    return read_16k(path)


@dataclass(frozen=True)
class Utterance:
    speaker: str
    start: float
    end: float
    text: str = ""


def _pyannote_file(name: str) -> Path:
    try:
        dist = metadata.distribution("pyannote.audio")
    except metadata.PackageNotFoundError:
        raise MissingSpeech("pip install --no-deps pyannote-audio") from None
    path = Path(str(dist.locate_file(f"pyannote/audio/sample/{name}")))
    if not path.exists():
        raise MissingSpeech(f"pyannote-audio has no sample/{name}")
    return path


def phone_conversation() -> tuple[np.ndarray, list[Utterance]]:
    """pyannote's 30 s phone conversation at 16 kHz, and its utterances in time order (from the .stm,
    with what is said)."""
    audio = read_16k(_pyannote_file("sample.wav"))
    utterances = []
    for line in _pyannote_file("sample.stm").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and not line.startswith(";;"):
            utterances.append(Utterance(fields[2], float(fields[3]), float(fields[4]), " ".join(fields[5:])))
    return audio, sorted(utterances, key=lambda u: u.start)
