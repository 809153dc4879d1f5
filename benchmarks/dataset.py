"""The labeled multi-turn recordings that the endpointing benchmark plays, made offline and deterministically.

Each recording is a user talking to the assistant: 3-5 turns of speech with pauses placed inside the
sentences (0.2-0.6 s, which must not end a turn), gaps of 1.5-2.5 s between turns (room for a reply,
which must end it), and background noise (sox pink or brown noise) at a known SNR. Because the speech is
synthetic and trimmed, the true start and end of every turn and of every inner pause are known to the
sample: those are the labels the benchmark scores against.

Two speakers. espeak-ng speaks each sentence piece on its own and silence is put between them; but
every piece then ends with a final, falling intonation, so a semantic end-of-turn model hears each inner
pause as the end of a sentence. Kokoro-82M speaks the whole sentence with a comma at each pause point,
and pauses there with a continuation intonation, not a final one; its pause is then stretched (or
shortened) to the planned length in its middle, so that the intonation stays and the length is controlled.

A plan (what to say, how, with which pauses) comes from the seed alone; rendering it runs espeak-ng,
Kokoro and sox. The WAVs and a JSON manifest are cached in a folder named by a hash of the plans and of
the generator's settings, so changing the generator can never reuse stale audio.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict

from benchmarks.speech import RATE, speak, speak_kokoro

VOICES = ("en-us", "en-gb", "en-us+f3", "en-us+m7")
SPEEDS = (140, 170, 200)
SNRS_DB: tuple[float | None, ...] = (None, 20.0, 10.0)
"""None is clean speech."""
NOISES = ("pinknoise", "brownnoise")
ESPEAK_SIZE = 12
"""Recordings 0-11, espeak-ng: every voice meets every SNR and every speed once (index mod 4, 3 and
index div 4)."""
KOKORO_SIZE = 6
"""Recordings 12-17, Kokoro: every SNR (index mod 3) with both noises (index mod 2)."""
KOKORO_VOICE = "jm_kumo"
QUICK = (0, 5, 10, 12)
"""Three espeak recordings (three voices, three speeds, each SNR once) and a clean Kokoro one."""
TURNS = (3, 5)
INNER_PAUSE_S = (0.2, 0.6)
GAP_S = (1.5, 2.5)
LEAD_IN_S = 1.0
TAIL_S = 3.0
"""After the last turn: longer than any endpointer's delay, so the last turn is judged fairly."""
NOISE_BED_S = 90

SENTENCES: tuple[tuple[str, ...], ...] = (
    ("Can you tell me", "a short story", "about a robot?"),
    ("What is the weather", "going to be like", "tomorrow in Paris?"),
    ("I would like to", "book a table", "for two people tonight."),
    ("Remind me to call", "my sister", "after lunch."),
    ("How far is", "the moon", "from the earth?"),
    ("Please turn off", "the lights in the kitchen."),
    ("What did you say", "about the train schedule?"),
    ("Play some music", "that helps me", "focus on my work."),
    ("Why is the sky", "blue during the day?"),
    ("Could you explain", "how a rainbow", "forms after the rain?"),
    ("Thanks, that was", "really helpful."),
    ("Okay.",),
    ("Set a timer", "for ten minutes."),
    ("Which one of those", "would you recommend", "for a beginner?"),
)
KOKORO_SENTENCES = (1, 5, 6, 7, 8, 11)
"""The sentences (indices into SENTENCES) in which Kokoro pauses at every comma: in the other eight it
glides through at least one (12 pauses for 22 commas over all sentences; "How far is, the moon, from
the earth?" makes none). `render` checks it again."""
PAUSE_LEVEL = 0.01 * 0.8
"""Silence is no sample above this: the level at which `speak` and `speak_kokoro` trim their speech
(0.01, before their 0.8 gain), so that pause edges are labeled like turn edges."""
MIN_PAUSE_S = 0.15
"""A silence at least this long inside Kokoro's speech is a pause. Its comma pauses last 0.185-0.344 s;
everything shorter that it makes is at most 0.113 s (stop closures, commas it barely marks)."""


@dataclass(frozen=True)
class TurnPlan:
    pieces: tuple[str, ...]
    pauses: tuple[float, ...]
    """Silence between consecutive pieces (one fewer than the pieces)."""
    gap_after: float


@dataclass(frozen=True)
class RecordingPlan:
    name: str
    voice: str
    """An espeak-ng voice, or `kokoro:` and a Kokoro voice."""
    speed: int | None
    """espeak-ng's words per minute; None for Kokoro (its normal speed)."""
    snr_db: float | None
    noise: str
    noise_offset: float
    """Where in the noise bed this recording's noise starts, as a fraction of the spare length."""
    turns: tuple[TurnPlan, ...]


class TurnLabel(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    start: float
    end: float
    pauses: tuple[tuple[float, float], ...]
    """(start, end) of each silence inside the turn, in seconds from the recording's start."""
    kind: str | None = None
    """How the turn was made, where a set has several ways (benchmarks/human_set.py); None otherwise."""


Split = Literal["tune", "held-out"]


class Recording(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    wav: str
    """File name in the dataset folder."""
    voice: str
    speed: int | None
    snr_db: float | None
    noise: str | None
    duration: float
    turns: tuple[TurnLabel, ...]
    split: Split = "tune"
    """"held-out": never looked at while tuning, reported apart (the human set holds some out)."""


class Manifest(BaseModel):
    key: str
    recordings: tuple[Recording, ...]


def plan_recording(index: int, *, seed: int = 0) -> RecordingPlan:
    """The plan of recording `index`: conditions from the index (balanced), the rest from the seed."""
    rng = np.random.default_rng([seed, index])
    speed: int | None
    if index < ESPEAK_SIZE:
        voice, speed, snr = VOICES[index % 4], SPEEDS[index % 3], SNRS_DB[(index // 4) % 3]
        sentences, speaker = SENTENCES, f"{voice}-{speed}wpm"
    else:
        voice, speed, snr = f"kokoro:{KOKORO_VOICE}", None, SNRS_DB[index % 3]
        sentences, speaker = tuple(SENTENCES[i] for i in KOKORO_SENTENCES), f"kokoro-{KOKORO_VOICE}"
    chosen = rng.choice(len(sentences), size=int(rng.integers(TURNS[0], TURNS[1] + 1)), replace=False)
    turns = tuple(
        TurnPlan(
            pieces=sentences[i],
            pauses=tuple(round(float(p), 3) for p in rng.uniform(*INNER_PAUSE_S, len(sentences[i]) - 1)),
            gap_after=round(float(rng.uniform(*GAP_S)), 3),
        )
        for i in chosen
    )
    snr_name = "clean" if snr is None else f"{snr:g}dB"
    return RecordingPlan(
        name=f"{index:02d}-{speaker}-{snr_name}",
        voice=voice,
        speed=speed,
        snr_db=snr,
        noise=NOISES[index % 2],
        noise_offset=round(float(rng.uniform()), 4),
        turns=turns,
    )


def noise_bed(kind: str, folder: Path) -> np.ndarray:
    """NOISE_BED_S seconds of sox noise (`sox -R` seeds its generator: the same noise every time)."""
    path = folder / f"{kind}.wav"
    if not path.exists():
        sox = shutil.which("sox")
        if sox is None:
            raise RuntimeError("sox is not installed: run `bash .ci/run` or `apt-get install -y sox`")
        cmd = [sox, "-R", "-n", "-r", str(RATE), "-c", "1", "-b", "16", str(path)]
        subprocess.run([*cmd, "synth", str(NOISE_BED_S), kind], check=True, capture_output=True)
    samples, _ = sf.read(path, dtype="float32")
    return np.asarray(samples)


def voice_kind(voice: str) -> str:
    """`kokoro` or `espeak`: which engine spoke a recording of this voice."""
    return "kokoro" if voice.startswith("kokoro:") else "espeak"


@dataclass(frozen=True)
class SpokenTurn:
    text: str
    audio: np.ndarray
    pauses: tuple[tuple[int, int], ...]
    """(start, end) of each inner pause, in samples from the turn's first sample."""
    kind: str | None = None

    def speech(self) -> np.ndarray:
        """The audio without its inner pauses: what the noise level is measured against."""
        bounds = [0, *(edge for pause in self.pauses for edge in pause), len(self.audio)]
        return np.concatenate([self.audio[a:b] for a, b in zip(bounds[::2], bounds[1::2], strict=True)])


def speak_espeak_turn(turn: TurnPlan, voice: str, speed: int) -> SpokenTurn:
    """Each piece spoken on its own, with the planned silence between them."""
    parts: list[np.ndarray] = []
    pauses = []
    cursor = 0
    for i, piece in enumerate(turn.pieces):
        if i:
            silence = np.zeros(int(turn.pauses[i - 1] * RATE), dtype=np.float32)
            pauses.append((cursor, cursor + len(silence)))
            parts.append(silence)
            cursor += len(silence)
        parts.append(speak(piece, voice=voice, speed=speed))
        cursor += len(parts[-1])
    return SpokenTurn(" ".join(turn.pieces), np.concatenate(parts), tuple(pauses))


def silences(audio: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) in samples of each run of at least MIN_PAUSE_S between two samples above PAUSE_LEVEL.

    On the sample peaks rather than on a frame energy: Kokoro's weak fricatives (the /f/ of "off,")
    are 30-40 dB below its vowels, as quiet as some of its pauses, and a frame energy threshold that
    keeps them out of a pause also cuts its shallowest pauses into pieces shorter than a stop closure.
    """
    loud = np.flatnonzero(np.abs(audio) > PAUSE_LEVEL)
    gaps = np.flatnonzero(np.diff(loud) > MIN_PAUSE_S * RATE)
    return [(int(loud[g]) + 1, int(loud[g + 1])) for g in gaps]


def speak_kokoro_turn(turn: TurnPlan, voice: str) -> SpokenTurn:
    """The sentence spoken whole, a comma at each pause point; each of Kokoro's comma pauses resized to
    the planned length in its middle, where it is silent, so that the speech on both sides is intact."""
    text = ", ".join(turn.pieces)
    audio = speak_kokoro(text, voice=voice)
    found = silences(audio)
    if len(found) != text.count(","):
        raise ValueError(f"Kokoro made {len(found)} pauses for the {text.count(',')} commas of {text!r}")
    parts: list[np.ndarray] = []
    pauses = []
    cursor = done = 0
    for (start, end), planned in zip(found, turn.pauses, strict=True):
        length = int(planned * RATE)
        kept = min(end - start, length)  # of Kokoro's own pause: half before the new silence, half after
        parts += [audio[done : start + kept // 2], np.zeros(length - kept, dtype=np.float32)]
        pauses.append((cursor + start - done, cursor + start - done + length))
        cursor += len(parts[-2]) + len(parts[-1])
        done = end - (kept - kept // 2)
    parts.append(audio[done:])
    return SpokenTurn(text, np.concatenate(parts), tuple(pauses))


def speak_turn(plan: RecordingPlan, turn: TurnPlan) -> SpokenTurn:
    """In the plan's voice: Kokoro's plans have no speed (see RecordingPlan)."""
    if plan.speed is None:
        return speak_kokoro_turn(turn, plan.voice.removeprefix("kokoro:"))
    return speak_espeak_turn(turn, plan.voice, plan.speed)


def lay_out(turns: Sequence[SpokenTurn], gaps: Sequence[float]) -> tuple[np.ndarray, list[TurnLabel]]:
    """The turns on one timeline: LEAD_IN_S of silence, then each turn and the gap after it (`gaps`,
    one fewer than the turns), TAIL_S after the last; labels in seconds from the first sample."""
    parts: list[np.ndarray] = [np.zeros(int(LEAD_IN_S * RATE), dtype=np.float32)]
    cursor = len(parts[0])
    labels: list[TurnLabel] = []
    for spoken, after in zip(turns, [*gaps, TAIL_S], strict=True):
        parts.append(spoken.audio)
        pauses = tuple(((cursor + a) / RATE, (cursor + b) / RATE) for a, b in spoken.pauses)
        start, cursor = cursor, cursor + len(spoken.audio)
        labels.append(
            TurnLabel(
                text=spoken.text, start=start / RATE, end=cursor / RATE, pauses=pauses, kind=spoken.kind
            )
        )
        parts.append(np.zeros(int(after * RATE), dtype=np.float32))
        cursor += len(parts[-1])
    return np.concatenate(parts), labels


def render(plan: RecordingPlan, folder: Path) -> tuple[Recording, np.ndarray]:
    """The recording's audio and its labels (every time in seconds from the first sample)."""
    spoken = [speak_turn(plan, turn) for turn in plan.turns]
    audio, labels = lay_out(spoken, [turn.gap_after for turn in plan.turns[:-1]])
    if plan.snr_db is not None:
        speech = np.concatenate([turn.speech() for turn in spoken])
        audio = audio + _noise(plan, folder, len(audio), _rms(speech))
    audio = audio / max(1.0, float(np.abs(audio).max()) / 0.99)  # never clip; the labels do not move
    recording = Recording(
        name=plan.name,
        wav=f"{plan.name}.wav",
        voice=plan.voice,
        speed=plan.speed,
        snr_db=plan.snr_db,
        noise=None if plan.snr_db is None else plan.noise,
        duration=len(audio) / RATE,
        turns=tuple(labels),
    )
    return recording, audio.astype(np.float32)


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def _noise(plan: RecordingPlan, folder: Path, length: int, speech_rms: float) -> np.ndarray:
    """Noise for the whole recording, scaled so that speech RMS / noise RMS is the plan's SNR."""
    assert plan.snr_db is not None
    bed = noise_bed(plan.noise, folder)
    if length > len(bed):
        raise ValueError(f"{plan.name} is longer than the {NOISE_BED_S} s noise bed")
    offset = int(plan.noise_offset * (len(bed) - length))
    noise = bed[offset : offset + length]
    return noise * (speech_rms / _rms(noise) / 10 ** (plan.snr_db / 20))


Rendered = Iterable[tuple[Recording, np.ndarray]]


def cached(
    cache: Path, prefix: str, generator: dict[str, Any], render_all: Callable[[Path], Rendered]
) -> tuple[Path, list[Recording]]:
    """A set's folder and recordings: `cache/PREFIX-KEY`, KEY a hash of everything that made it
    (`generator`: plans and settings), rendered by `render_all(folder)` unless already there."""
    settings = {
        "lead_in": LEAD_IN_S,
        "tail": TAIL_S,
        "rate": RATE,
        "pauses": {"level": PAUSE_LEVEL, "min": MIN_PAUSE_S},
    }
    key = hashlib.sha256(json.dumps({**generator, **settings}, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache / f"{prefix}-{key}"
    manifest_path = folder / "manifest.json"
    if manifest_path.exists():
        return folder, list(Manifest.model_validate_json(manifest_path.read_text()).recordings)
    folder.mkdir(parents=True, exist_ok=True)
    recordings = []
    for recording, audio in render_all(folder):
        sf.write(folder / recording.wav, audio, RATE, subtype="FLOAT")
        recordings.append(recording)
    manifest = Manifest(key=key, recordings=tuple(recordings))
    manifest_path.write_text(manifest.model_dump_json(indent=1))
    return folder, recordings


def load_dataset(cache: Path, *, quick: bool = False, seed: int = 0) -> tuple[Path, list[Recording]]:
    """The dataset's folder and its recordings, rendered into `cache` unless already there."""
    indices: Sequence[int] = QUICK if quick else range(ESPEAK_SIZE + KOKORO_SIZE)
    plans = [plan_recording(i, seed=seed) for i in indices]
    return cached(
        cache,
        "endpointing",
        {"plans": [asdict(p) for p in plans]},
        lambda folder: (render(plan, folder) for plan in plans),
    )


def read_audio(folder: Path, recording: Recording) -> np.ndarray:
    samples, rate = sf.read(folder / recording.wav, dtype="float32")
    if rate != RATE:
        raise ValueError(f"{recording.wav}: {rate} Hz, expected {RATE}")
    return np.asarray(samples)
