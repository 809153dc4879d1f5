"""What every tiny-family test shares: what each family is expected to be and the packages it needs,
its tiny checkpoint (loaded, or written by the CLI), three spoken turns, and the window the model gets for
the third (turns one and two heard as audio, with their replies)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

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


@dataclass(frozen=True)
class TinyFamily:
    """A family as its tests expect it: the transformers classes, the special tokens its prompt is made
    of, and the transcription request."""

    name: str
    model_class: str
    processor_class: str
    specials: tuple[str, ...]
    """Tokens the chat template writes, each of which must stay one token."""
    transcription: str
    """What the prompt of a transcription request holds."""
    transcript_decode: Mapping[str, Any] = field(default_factory=dict)
    """batch_decode's extra arguments for a transcript."""
    transcribes_words: bool = True
    """False where the tiny random weights may greedily say nothing at all."""
    needs: Mapping[str, str] = field(default_factory=dict)
    """Modules the family needs and why: without them its tests are skipped."""

    def skip_unless_installed(self) -> None:
        for module, reason in self.needs.items():
            require_module(module, reason)


FAMILIES = (
    TinyFamily(
        "qwen2_audio",
        "Qwen2AudioForConditionalGeneration",
        "Qwen2AudioProcessor",
        ("<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"),
        "<|audio_eos|>\nWrite down exactly what is said in this audio, and nothing else.<|im_end|>",
    ),
    TinyFamily(
        "voxtral",
        "VoxtralForConditionalGeneration",
        "VoxtralProcessor",
        (),
        "[/INST][TRANSCRIBE]",
    ),
    TinyFamily(
        "audioflamingo3",
        "AudioFlamingo3ForConditionalGeneration",
        "AudioFlamingo3Processor",
        ("<|im_start|>", "<|im_end|>", "<sound>"),
        "Transcribe the input speech.<|im_end|>",
        transcript_decode={"strip_prefix": True},
    ),
    TinyFamily(
        "granite_speech",
        "GraniteSpeechForConditionalGeneration",
        "GraniteSpeechProcessor",
        ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>", "<|audio|>"),
        "can you transcribe the speech into a written format?<|end_of_text|>",
        transcribes_words=False,
        needs={
            "torchaudio": "GraniteSpeechFeatureExtractor computes mel features with torchaudio",
            "peft": "Granite Speech checkpoints carry a LoRA adapter: the family needs peft",
        },
    ),
    TinyFamily(
        "phi4_multimodal",
        "Phi4MultimodalForCausalLM",
        "Phi4MultimodalProcessor",
        ("<|user|>", "<|assistant|>", "<|end|>", "<|audio|>"),
        "Transcribe the audio clip into text.<|end|><|assistant|>",
        transcribes_words=False,
        needs={
            "torchvision": "Phi4MultimodalProcessor holds a torchvision image processor",
            "peft": "Phi-4 hears audio through its speech LoRA adapter (peft)",
        },
    ),
)


def tiny_family(name: str) -> TinyFamily:
    return next(family for family in FAMILIES if family.name == name)


def load_tiny(
    tmp_path_factory: pytest.TempPathFactory, family: str, *, temperature: float = 1.0
) -> TransformersAudioLM:
    directory = build_tiny_model(tmp_path_factory.mktemp("tiny") / family, family)
    sampling = Sampling.from_settings(ModelSettings(max_new_tokens=8, temperature=temperature))
    return TransformersAudioLM.load(str(directory), device="cpu", sampling=sampling)


def greedy_transcript(
    lm: TransformersAudioLM, inputs: Any, decode: Mapping[str, Any], max_new_tokens: int
) -> str:
    """What generate() writes greedily after the transcription prompt, decoded with `decode`."""
    with torch.inference_mode():
        output = lm._model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    words = output[:, inputs["input_ids"].shape[1] :]
    return str(lm._processor.batch_decode(words, skip_special_tokens=True, **decode)[0]).strip()


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
