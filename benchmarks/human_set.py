"""The endpointing benchmark's human-speech set: real people's turns, labeled to the sample, some held out.

Made at run time from the speech that Debian and PyPI ship (benchmarks/human_speech.py; nothing is
committed), deterministically from a seed:

- **Asterisk prompts** (one professional voice, 8 kHz: telephone band already), each used once:
  - `several sentences`: every prompt of 2+ sentences (at most SEVERAL_MAX_WORDS words, no fragments);
    its own pauses between sentences (0.16-0.39 s here) are inner pauses that must not end the turn;
  - `inserted pause`: a one-sentence prompt with 0.3-0.8 s of true silence inserted between two words
    in the middle half of its speech, at the word boundary (pocketsphinx's forced alignment) where
    the voice is quietest; the prompt's own final intonation is kept;
  - `one sentence`: other one-sentence prompts, as they are;
  - `short`: "Thank you.", "Hello.", "no", digits.
- **pyannote's phone conversation** (two people): each run of one speaker's consecutive utterances is
  one `phone` turn, cut out and re-spaced; and a `phone 8k mu-law` copy of each, band-limited to
  300-3400 Hz and sent through 8 kHz G.711 mu-law and back, as a phone line would.

Every turn is trimmed at the synthetic set's level rule (dataset.PAUSE_LEVEL) and its inner pauses
are its silences by the same rule (dataset.silences), so labels mean the same in both sets. A third
of each kind of turn is held out (chosen by the seed; a phone turn and its telephone copy go
together), and recordings are made of turns of one split and one source: 3-5 turns, with the
synthetic set's lead-in, gaps and tail (dataset.lay_out), cached the same way (dataset.cached).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr
from pocketsphinx import Decoder

from benchmarks.dataset import (
    GAP_S,
    PAUSE_LEVEL,
    TURNS,
    Recording,
    Split,
    SpokenTurn,
    cached,
    lay_out,
    silences,
)
from benchmarks.human_speech import asterisk_prompt, asterisk_transcripts, phone_conversation
from benchmarks.speech import RATE
from voice_assistant.audio.g711 import TELEPHONE_RATE, decode_g711, encode_g711

SEVERAL, INSERTED, ONE, SHORT = "several sentences", "inserted pause", "one sentence", "short"
PHONE, PHONE_8K = "phone", "phone 8k mu-law"
KINDS = (SEVERAL, INSERTED, ONE, SHORT, PHONE, PHONE_8K)
VOICES = {SEVERAL: "asterisk", INSERTED: "asterisk", ONE: "asterisk", SHORT: "asterisk"}
VOICES |= {PHONE: "pyannote-phone", PHONE_8K: "pyannote-phone-8k-mulaw"}
"""Recording.voice: recordings never mix sources (one caller per call)."""
SEVERAL_MAX_WORDS = 30
"""Longer prompts are announcements (up to 60 s), not what a user says in one turn."""
ONE_SENTENCE_WORDS = (6, 16)
INSERTED_COUNT, ONE_COUNT, SHORT_COUNT = 18, 8, 6
SHORT_PROMPTS = (
    "auth-thankyou",
    "privacy-thankyou",
    "hello",
    "goodbye",
    "one-moment-please",
    "vm-no",
    *(f"digits/{d}" for d in range(10)),
)
INSERTED_PAUSE_S = (0.3, 0.8)
INSERT_WITHIN = (0.25, 0.75)
"""The inserted pause lies in this part of the speech: a pause near either end is not mid-sentence."""
HELD_OUT_SHARE = 1 / 3
SPLITS: tuple[Split, ...] = ("tune", "held-out")
EDGE_FADE_S = 0.01
"""A phone turn is cut from running audio: its edges fade in and out, so that the cut does not click."""
QUICK = (
    ("asterisk", "tune"),
    ("asterisk", "held-out"),
    ("pyannote-phone", "tune"),
    ("pyannote-phone-8k-mulaw", "held-out"),
)
"""`--quick`: the first recording of each of these (source, split)."""


@dataclass(frozen=True)
class TurnSource:
    kind: str
    """One of KINDS."""
    name: str
    """The Asterisk prompt (`vm-mismatch`), or `phone-N`: the Nth run of one speaker in the conversation."""
    text: str
    inserted: float | None = None
    """Seconds of silence inserted mid-sentence (`inserted pause` turns only)."""

    @property
    def group(self) -> str:
        """The speech it is made of: a phone turn and its telephone copy are one group (one split)."""
        return self.name


@dataclass(frozen=True)
class HumanRecordingPlan:
    name: str
    voice: str
    split: Split
    turns: tuple[TurnSource, ...]
    gaps: tuple[float, ...]
    """Silence after each turn but the last (dataset.TAIL_S follows the last)."""


def sentence_count(text: str) -> int:
    return len(re.findall(r"[.?!]+(?=\s|$)", text))


def plain_words(text: str) -> list[str]:
    """The words as pocketsphinx's dictionary spells them."""
    return re.sub(r"[^a-z' ]", " ", text.lower().replace("-", " ")).split()


def asterisk_sources(rng: np.random.Generator) -> list[TurnSource]:
    """Every usable several-sentence prompt; one-sentence and short prompts drawn by `rng`."""
    transcripts = asterisk_transcripts()
    # Fragments ("... letters of your party's name") and stage directions are not a whole turn.
    whole = {name: text for name, text in sorted(transcripts.items()) if not re.search(r"\.\.\.|\(|\"", text)}
    several = [n for n, t in whole.items() if sentence_count(t) >= 2 and len(t.split()) <= SEVERAL_MAX_WORDS]
    low, high = ONE_SENTENCE_WORDS
    single = [
        n
        for n, t in whole.items()
        if sentence_count(t) == 1 and low <= len(t.split()) <= high and re.fullmatch(r"[A-Za-z' ,.?!-]+", t)
    ]
    drawn = [single[i] for i in rng.permutation(len(single))[: INSERTED_COUNT + ONE_COUNT]]
    short = [n for n in SHORT_PROMPTS if n in transcripts]
    lengths = rng.uniform(*INSERTED_PAUSE_S, INSERTED_COUNT)
    return [
        *(TurnSource(SEVERAL, n, whole[n]) for n in several),
        *(
            TurnSource(INSERTED, n, whole[n], round(float(s), 3))
            for n, s in zip(drawn[:INSERTED_COUNT], lengths, strict=True)
        ),
        *(TurnSource(ONE, n, whole[n]) for n in drawn[INSERTED_COUNT:]),
        *(
            TurnSource(SHORT, short[i], transcripts[short[i]])
            for i in sorted(rng.permutation(len(short))[:SHORT_COUNT])
        ),
    ]


@dataclass(frozen=True)
class Run:
    speaker: str
    start: float
    end: float
    text: str


def speaker_runs() -> list[Run]:
    """The conversation's consecutive utterances of one speaker, merged: each is what one person said
    before the other spoke (the gaps inside, 2-80 ms here, stay as they were)."""
    _, utterances = phone_conversation()
    runs: list[Run] = []
    for u in utterances:
        if runs and runs[-1].speaker == u.speaker:
            last = runs.pop()
            runs.append(Run(u.speaker, last.start, u.end, f"{last.text} {u.text}"))
        else:
            runs.append(Run(u.speaker, u.start, u.end, u.text))
    return runs


def phone_sources() -> list[TurnSource]:
    runs = speaker_runs()
    return [
        TurnSource(kind, f"phone-{i}", f"{run.speaker}: {run.text}")
        for kind in (PHONE, PHONE_8K)
        for i, run in enumerate(runs)
    ]


def held_out_groups(sources: Sequence[TurnSource], rng: np.random.Generator) -> set[str]:
    """HELD_OUT_SHARE of each kind's groups, drawn by `rng` (the telephone copies follow the phone turns)."""
    held: set[str] = set()
    for kind in KINDS:
        if kind == PHONE_8K:
            continue
        groups = sorted({s.group for s in sources if s.kind == kind})
        held |= {groups[i] for i in rng.permutation(len(groups))[: round(len(groups) * HELD_OUT_SHARE)]}
    return held


def recording_sizes(turns: int) -> list[int]:
    """`turns` cut into recordings of TURNS[0]-TURNS[1] turns, as even as possible."""
    low, high = TURNS
    count = max(1, round(turns / ((low + high) / 2)))
    count = max(count, -(-turns // high))
    while count > 1 and turns < low * count:
        count -= 1
    base, extra = divmod(turns, count)
    return [base + 1] * extra + [base] * (count - extra)


def plan_human_set(*, seed: int = 0) -> list[HumanRecordingPlan]:
    """Every recording of the set: the turns, their split and order, and the gaps, from the seed alone."""
    rng = np.random.default_rng([seed, 12])
    sources = [*asterisk_sources(rng), *phone_sources()]
    held = held_out_groups(sources, rng)
    plans: list[HumanRecordingPlan] = []
    for voice in dict.fromkeys(VOICES.values()):
        for split in SPLITS:
            mine = [
                s for s in sources if VOICES[s.kind] == voice and (s.group in held) == (split == "held-out")
            ]
            shuffled = [mine[i] for i in rng.permutation(len(mine))]
            for size in recording_sizes(len(shuffled)):
                turns, shuffled = tuple(shuffled[:size]), shuffled[size:]
                gaps = tuple(round(float(g), 3) for g in rng.uniform(*GAP_S, size - 1))
                name = f"h{len(plans):02d}-{voice}-{split}"
                plans.append(HumanRecordingPlan(name, voice, split, turns, gaps))
    return plans


def trimmed(audio: np.ndarray) -> np.ndarray:
    """From the first to the last sample above PAUSE_LEVEL: the synthetic set's rule for a turn's edges."""
    loud = np.flatnonzero(np.abs(audio) > PAUSE_LEVEL)
    return audio[loud[0] : loud[-1] + 1]


@functools.cache
def _aligner() -> Decoder:
    return Decoder(samprate=RATE, loglevel="FATAL")


def word_boundaries(audio: np.ndarray, text: str) -> list[int]:
    """Samples at which one word ends and the next begins with no silence between them, from
    pocketsphinx's forced alignment of `text` (10 ms frames)."""
    decoder = _aligner()
    decoder.set_align_text(" ".join(plain_words(text)))
    decoder.start_utt()
    decoder.process_raw((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), full_utt=True)
    decoder.end_utt()
    segments = list(decoder.seg())
    frame = RATE // 100
    return [
        b.start_frame * frame
        for a, b in zip(segments, segments[1:], strict=False)
        if not a.word.startswith("<") and not b.word.startswith("<") and b.start_frame == a.end_frame + 1
    ]


def insert_pause(audio: np.ndarray, text: str, seconds: float) -> tuple[np.ndarray, int]:
    """`audio` with `seconds` of zeros inserted at a word boundary in its middle half, and where."""
    low, high = (int(share * len(audio)) for share in INSERT_WITHIN)
    inner = [b for b in word_boundaries(audio, text) if low <= b <= high]
    if not inner:
        raise ValueError(f"no word boundary in the middle of {text!r}")
    window = RATE // 100  # 10 ms each side: the voice's level at the boundary

    def level(sample: int) -> float:
        return float(np.abs(audio[sample - window : sample + window]).max())

    boundary = min(inner, key=level)
    # At the quietest sample near the boundary, so that neither side ends in a click.
    at = boundary - window + int(np.argmin(np.abs(audio[boundary - window : boundary + window])))
    silence = np.zeros(round(seconds * RATE), dtype=np.float32)
    return np.concatenate([audio[:at], silence, audio[at:]]), at


def telephone(audio: np.ndarray) -> np.ndarray:
    """What a phone line makes of `audio`: 300-3400 Hz (zero-phase, in the frequency domain, with
    50 Hz cosine edges), then 8 kHz G.711 mu-law and back to 16 kHz."""
    padded = np.pad(audio, RATE // 10)  # room for the filter's ringing, which would wrap around
    freqs = np.fft.rfftfreq(len(padded), 1 / RATE)
    edge = 50.0
    rise = np.clip((freqs - 300 + edge) / edge, 0, 1)
    fall = np.clip((3400 + edge - freqs) / edge, 0, 1)
    gain = np.sin(np.pi / 2 * np.minimum(rise, fall)) ** 2
    band = np.fft.irfft(np.fft.rfft(padded) * gain, len(padded)).astype(np.float32)
    line = decode_g711(encode_g711(soxr.resample(band, RATE, TELEPHONE_RATE)))
    return np.asarray(soxr.resample(line, TELEPHONE_RATE, RATE), dtype=np.float32)


def phone_cut(run: Run) -> np.ndarray:
    audio, _ = phone_conversation()
    cut = audio[round(run.start * RATE) : round(run.end * RATE)].copy()
    fade = np.linspace(0, 1, round(EDGE_FADE_S * RATE), dtype=np.float32)
    cut[: len(fade)] *= fade
    cut[len(cut) - len(fade) :] *= fade[::-1]
    return cut


def speak_source(source: TurnSource) -> SpokenTurn:
    """The turn's audio, trimmed, with its inner pauses (by the level rule, inserted ones included)."""
    if source.kind in (PHONE, PHONE_8K):
        cut = phone_cut(speaker_runs()[int(source.name.removeprefix("phone-"))])
        audio = trimmed(telephone(cut) if source.kind == PHONE_8K else cut)
    else:
        audio = trimmed(asterisk_prompt(source.name))
        if source.inserted is not None:
            audio, _ = insert_pause(audio, source.text, source.inserted)
    return SpokenTurn(source.text, audio, tuple(silences(audio)), kind=source.kind)


def render_human(plan: HumanRecordingPlan) -> tuple[Recording, np.ndarray]:
    audio, labels = lay_out([speak_source(s) for s in plan.turns], plan.gaps)
    recording = Recording(
        name=plan.name,
        wav=f"{plan.name}.wav",
        voice=plan.voice,
        speed=None,
        snr_db=None,
        noise=None,
        duration=len(audio) / RATE,
        turns=tuple(labels),
        split=plan.split,
    )
    return recording, audio


def quick_plans(plans: Sequence[HumanRecordingPlan]) -> list[HumanRecordingPlan]:
    return [next(p for p in plans if (p.voice, p.split) == wanted) for wanted in QUICK]


def load_human_set(cache: Path, *, quick: bool = False, seed: int = 0) -> tuple[Path, list[Recording]]:
    """The human set's folder and recordings, rendered into `cache` unless already there."""
    plans = plan_human_set(seed=seed)
    if quick:
        plans = quick_plans(plans)

    def render_all(_: Path) -> Iterator[tuple[Recording, np.ndarray]]:
        return (render_human(plan) for plan in plans)

    # This module's own text: any change to how the turns are made renders the set anew.
    generator = {"plans": [asdict(p) for p in plans], "code": Path(__file__).read_text()}
    return cached(cache, "endpointing-human", generator, render_all)
