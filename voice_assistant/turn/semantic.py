"""Semantic end of turn: does the paused speech sound finished? (Smart Turn v3, ONNX, BSD-2.)

Silence alone cannot tell a finished sentence from a pause inside one, so a fast silence threshold
splits sentences and a safe one answers late. At a short pause the end-of-turn model hears the turn
(intonation and words), and its probability sets how much more silence ends it (turn/policy.py).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.errors import VoiceAssistantError

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 8
"""Smart Turn hears the last 8 s of the turn."""


class EndOfTurnModel(Protocol):
    def complete_probability(self, audio: Samples) -> float:
        """Blocking (run it in a thread): the probability that the turn is finished."""
        ...


def packaged_smart_turn() -> Path | None:
    """The Smart Turn v3 ONNX file that the `pipecat-ai` package ships, found without importing pipecat."""
    spec = importlib.util.find_spec("pipecat")
    if spec is None or spec.origin is None:
        return None
    candidates = sorted(
        (Path(spec.origin).parent / "audio" / "turn" / "smart_turn" / "data").glob("smart-turn-v3*.onnx")
    )
    return candidates[-1] if candidates else None


class SmartTurn:
    def __init__(self, path: Path) -> None:
        from transformers import WhisperFeatureExtractor

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._features = WhisperFeatureExtractor(chunk_length=WINDOW_SECONDS, feature_size=80)
        self.path = path

    def complete_probability(self, audio: Samples) -> float:
        window = WINDOW_SECONDS * MODEL_RATE
        clip = audio[-window:]
        clip = np.pad(clip, (window - len(clip), 0))  # the model was trained on left-padded windows
        features = self._features(
            clip,
            sampling_rate=MODEL_RATE,
            padding="max_length",
            max_length=window,
            truncation=True,
            do_normalize=True,
            return_tensors="np",
        ).input_features
        (probability,) = self._session.run(None, {"input_features": features.astype(np.float32)})
        return float(probability.reshape(-1)[0])


def load_end_of_turn(mode: str, path: Path | None) -> EndOfTurnModel | None:
    """`silence`: none (turns end on silence alone). `smart-turn`: Smart Turn, which must be at hand."""
    if mode == "silence":
        return None
    found = path or packaged_smart_turn()
    if found is None or not found.exists():
        raise VoiceAssistantError(
            "Smart Turn needs its ONNX file, which pipecat-ai ships: pip install pipecat-ai,"
            " set VA_SMART_TURN_PATH, or VA_END_OF_TURN=silence"
        )
    logger.info("semantic end of turn: %s", found)
    return SmartTurn(found)
