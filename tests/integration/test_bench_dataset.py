"""The endpointing benchmark's labeled recordings, rendered by the real speech engines: labels vs audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.dataset import (
    PAUSE_LEVEL,
    QUICK,
    Recording,
    load_dataset,
    plan_recording,
    read_audio,
    voice_kind,
)
from benchmarks.endpointing import CACHE
from benchmarks.speech import RATE

pytestmark = pytest.mark.integration

Dataset = tuple[Path, list[Recording]]


@pytest.fixture(scope="module")
def quick() -> Dataset:
    """The quick set, in the benchmark's cache: rendered once (a few seconds, Kokoro too), then read."""
    return load_dataset(CACHE, quick=True)


@pytest.mark.parametrize("kind", ["espeak", "kokoro"])
def test_the_labels_match_the_audio(quick: Dataset, kind: str) -> None:
    folder, recordings = quick
    index, clean = next(
        (i, r)
        for i, r in zip(QUICK, recordings, strict=True)
        if r.snr_db is None and voice_kind(r.voice) == kind
    )
    audio = read_audio(folder, clean)
    assert len(audio) == round(clean.duration * RATE)
    silence = np.ones(len(audio), dtype=bool)
    for turn, plan in zip(clean.turns, plan_recording(index).turns, strict=True):
        start, end = round(turn.start * RATE), round(turn.end * RATE)
        assert abs(audio[start]) > 0.005 and abs(audio[end - 1]) > 0.005  # speech up to both edges
        assert np.sqrt(np.mean(audio[start:end] ** 2)) > 0.03
        silence[start:end] = False
        for (pause_start, pause_end), planned in zip(turn.pauses, plan.pauses, strict=True):
            pause = slice(round(pause_start * RATE), round(pause_end * RATE))
            assert (pause.stop - pause.start) / RATE == pytest.approx(planned, abs=0.03)
            # Silent (espeak's: zeros; Kokoro's: its own pause, stretched), and speech right around it.
            assert np.abs(audio[pause]).max() <= PAUSE_LEVEL
            assert min(abs(audio[pause.start - 1]), abs(audio[pause.stop])) > 0.005
    assert np.all(audio[silence] == 0)  # the lead-in, the gaps and the tail


def test_the_noise_is_mixed_at_the_labeled_snr(quick: Dataset) -> None:
    folder, recordings = quick
    for recording in (r for r in recordings if r.snr_db is not None):
        audio = read_audio(folder, recording).astype(np.float64)
        speech = np.zeros(len(audio), dtype=bool)
        for turn in recording.turns:
            speech[round(turn.start * RATE) : round(turn.end * RATE)] = True
            for pause_start, pause_end in turn.pauses:
                speech[round(pause_start * RATE) : round(pause_end * RATE)] = False
        noise_power = np.mean(audio[~speech] ** 2)
        speech_power = np.mean(audio[speech] ** 2) - noise_power
        assert 10 * np.log10(speech_power / noise_power) == pytest.approx(recording.snr_db, abs=1.5)
