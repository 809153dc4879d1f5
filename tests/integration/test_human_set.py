"""The endpointing benchmark's human-speech set, made from the real Asterisk prompts and pyannote's phone
call: labels vs audio, the inserted pauses, the held-out split, the telephone copies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.dataset import MIN_PAUSE_S, PAUSE_LEVEL, Recording, read_audio, silences
from benchmarks.endpointing import CACHE
from benchmarks.human_set import (
    INSERT_WITHIN,
    INSERTED,
    KINDS,
    PHONE,
    PHONE_8K,
    SPLITS,
    TurnSource,
    insert_pause,
    load_human_set,
    plan_human_set,
    speak_source,
    trimmed,
    word_boundaries,
)
from benchmarks.human_speech import MissingSpeech, asterisk_prompt, phone_conversation
from benchmarks.speech import RATE

pytestmark = pytest.mark.integration

HumanSet = tuple[Path, list[Recording]]


@pytest.fixture(scope="module")
def human() -> HumanSet:
    """The whole set, in the benchmark's cache: rendered once (a few seconds), then read."""
    try:
        phone_conversation()
        return load_human_set(CACHE)
    except MissingSpeech as missing:
        pytest.skip(str(missing))


def test_the_set_is_big_enough_and_every_kind_is_in_both_splits(human: HumanSet) -> None:
    _, recordings = human
    turns = [(r.split, turn) for r in recordings for turn in r.turns]
    assert len(turns) >= 60
    assert sum(len(turn.pauses) for _, turn in turns) >= 50
    assert {(split, turn.kind) for split, turn in turns} == {(s, k) for s in SPLITS for k in KINDS}
    assert all(3 <= len(r.turns) <= 5 for r in recordings if r.voice == "asterisk")


def test_the_labels_match_the_audio(human: HumanSet) -> None:
    folder, recordings = human
    for recording in recordings:
        audio = read_audio(folder, recording)
        assert len(audio) == round(recording.duration * RATE)
        outside = np.ones(len(audio), dtype=bool)
        for turn in recording.turns:
            start, end = round(turn.start * RATE), round(turn.end * RATE)
            speech = audio[start:end]
            assert abs(speech[0]) > PAUSE_LEVEL and abs(speech[-1]) > PAUSE_LEVEL, turn.text  # to the sample
            assert np.sqrt(np.mean(speech**2)) > 0.01, turn.text
            outside[start:end] = False
            # The pauses are exactly the turn's silences by the level rule, each silent, speech around it.
            labeled = [(round(a * RATE) - start, round(b * RATE) - start) for a, b in turn.pauses]
            assert silences(speech) == labeled, turn.text
            for pause_start, pause_end in turn.pauses:
                pause = slice(round(pause_start * RATE), round(pause_end * RATE))
                assert pause_end - pause_start >= MIN_PAUSE_S
                assert np.abs(audio[pause]).max() <= PAUSE_LEVEL
                assert min(abs(audio[pause.start - 1]), abs(audio[pause.stop])) > PAUSE_LEVEL
        assert np.all(audio[outside] == 0), recording.name  # the lead-in, the gaps and the tail


def inserted_sources() -> list[TurnSource]:
    return [s for p in plan_human_set() for s in p.turns if s.kind == INSERTED]


def test_an_inserted_pause_has_its_planned_length_in_the_middle_of_the_sentence(human: HumanSet) -> None:
    sources = inserted_sources()
    assert len(sources) >= 15
    for source in sources:
        assert source.inserted is not None and 0.3 <= source.inserted <= 0.8
        original = trimmed(asterisk_prompt(source.name))
        audio, at = insert_pause(original, source.text, source.inserted)
        length = round(source.inserted * RATE)
        assert np.all(audio[at : at + length] == 0)
        assert np.array_equal(np.concatenate([audio[:at], audio[at + length :]]), original)  # speech intact
        low, high = INSERT_WITHIN
        assert low * len(original) <= at <= high * len(original), source.name
        # Between two words (pocketsphinx's alignment), at most 10 ms from where they meet.
        assert min(abs(at - b) for b in word_boundaries(original, source.text)) <= RATE // 100, source.name
        # The turn's label: one pause holds the inserted silence, as long as planned give or take the
        # quiet edge of the word boundary.
        spoken = speak_source(source)
        assert np.array_equal(spoken.audio, audio)
        holding = [(a, b) for a, b in spoken.pauses if a <= at and at + length <= b]
        assert len(holding) == 1, source.name
        a, b = holding[0]
        assert source.inserted <= (b - a) / RATE <= source.inserted + 0.1, source.name


def test_the_held_out_split_is_stable_disjoint_and_a_third() -> None:
    plans = plan_human_set()
    assert plans == plan_human_set()  # from the seed alone
    groups = {split: {s.group for p in plans if p.split == split for s in p.turns} for split in SPLITS}
    assert not groups["tune"] & groups["held-out"]  # a phone turn's telephone copy included
    turns = {split: sum(len(p.turns) for p in plans if p.split == split) for split in SPLITS}
    assert 0.25 <= turns["held-out"] / (turns["tune"] + turns["held-out"]) <= 0.4
    other = plan_human_set(seed=1)
    assert {p.name for p in other} == {p.name for p in plans}  # the same recordings, other turns held out
    held = {s.group for p in other if p.split == "held-out" for s in p.turns}
    assert held != groups["held-out"]


def band_shares(audio: np.ndarray) -> tuple[float, float]:
    """The share of the energy under 250 Hz and over 3500 Hz."""
    power = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float(power[freqs < 250].sum() / power.sum()), float(power[freqs > 3500].sum() / power.sum())


def test_the_telephone_copies_are_band_limited(human: HumanSet) -> None:
    """pyannote's call has nothing over 4 kHz already (1e-4 of its energy over 3.5 kHz) but 2-18 %
    under 250 Hz: the copy's 300 Hz edge is what shows; over 3.5 kHz is mu-law's noise floor."""
    copies = 0
    for source in {s for p in plan_human_set() for s in p.turns if s.kind == PHONE}:
        wide = speak_source(source)
        narrow = speak_source(TurnSource(PHONE_8K, source.name, source.text))
        low, high = band_shares(narrow.audio)
        assert low < 0.001 and high < 2e-4, source.name
        if len(wide.audio) > RATE:  # long enough for a spectrum: the original is not band-limited
            assert band_shares(wide.audio)[0] > 0.03, source.name
            copies += 1
        # The copy keeps the speech's length: the line neither shifts nor trims it much.
        assert abs(len(narrow.audio) - len(wide.audio)) / RATE < 0.35, source.name
    assert copies >= 4
