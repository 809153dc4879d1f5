"""What every tiny-family test shares: the packages it needs, the family's tiny checkpoint (loaded, or
written by the CLI), three spoken turns, and the window the model gets for the third (turns one and two
heard as audio, with their replies)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.speech import speak
from voice_assistant.config import ModelSettings
from voice_assistant.history.store import PastTurn
from voice_assistant.model.base import Sampling
from voice_assistant.model.hf_local import TransformersAudioLM
from voice_assistant.model.tiny import build_tiny_model
from voice_assistant.session.window import Window, WindowPolicy, build_window

Turns = tuple[np.ndarray, np.ndarray, np.ndarray]
REPLIES = ("Hi!", "Noon.")
REQUIRE_FAMILIES = "VA_REQUIRE_FAMILIES"
"""Set by .ci/run in its second environment (torch 2.11 with its torchaudio and torchvision), where Granite
Speech and Phi-4-multimodal must be tested: there a package that does not import fails the module."""


def require_module(name: str, reason: str) -> None:
    """`pytest.importorskip`, except where REQUIRE_FAMILIES is set: then the module fails instead."""
    try:
        importlib.import_module(name)
    except ImportError as error:
        why = f"{reason}: {error}"
        if os.environ.get(REQUIRE_FAMILIES):
            pytest.fail(f"{why} ({REQUIRE_FAMILIES} is set: this environment must test the family)")
        pytest.skip(f"{why}; .ci/run tests it in .venv-families, beside torch 2.11", allow_module_level=True)


def make_tiny_model(directory: Path, family: str) -> Path:
    """The family's tiny checkpoint, written as a user would: `voice-assistant make-tiny-model`."""
    subprocess.run(
        [sys.executable, "-m", "voice_assistant", "make-tiny-model", str(directory), "--family", family],
        check=True,
        capture_output=True,
    )
    return directory


def load_tiny(
    tmp_path_factory: pytest.TempPathFactory, family: str, *, temperature: float = 1.0
) -> TransformersAudioLM:
    directory = build_tiny_model(tmp_path_factory.mktemp("tiny") / family, family)
    sampling = Sampling.from_settings(ModelSettings(max_new_tokens=8, temperature=temperature))
    return TransformersAudioLM.load(str(directory), device="cpu", sampling=sampling)


def spoken_turns() -> Turns:
    return speak("Hello there."), speak("What is the time?"), speak("And the date?")


def third_turn_window(lm: TransformersAudioLM, turns: Turns) -> Window:
    first, second, third = turns
    past = [
        PastTurn(index=i, audio=audio, audio_seconds=len(audio) / 16_000, transcript=None, reply_text=reply)
        for i, (audio, reply) in enumerate(zip((first, second), REPLIES, strict=True))
    ]
    policy = WindowPolicy(
        "Be brief.", audio_turns=3, max_turns=8, token_budget=8000, audio_tokens=lm.audio_tokens
    )
    return build_window(policy, past, third)
