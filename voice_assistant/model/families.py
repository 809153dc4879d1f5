"""What differs between audio-language model families, in one table instead of branches in the code."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass

from voice_assistant.errors import ModelError


@dataclass(frozen=True)
class Family:
    model_type: str
    """The transformers `model_type` in the checkpoint's config.json."""
    title: str
    licence: str
    parameters: str
    system_prompt: bool
    """False: the system prompt is folded into the first user message."""
    audio_tokens_per_second: float
    """Prompt tokens per second of audio, for the history window's budget."""
    max_clip_seconds: float
    """Longest clip of one turn the model takes (the encoder's window, or more where the processor splits
    long audio into windows); longer turns are trimmed to their end."""
    audio_in_chat: bool = False
    """True: each clip rides inside the chat and the processor's `apply_chat_template` tokenizes both
    (Voxtral: mistral-common's Tekken has no text template). False: the chat template renders text with
    audio placeholders and the processor takes the clips beside it."""
    transcribe_prompt: str = "Write down exactly what is said in this audio, and nothing else."
    """How the family is asked for a transcript of a turn (beside the turn's audio)."""
    audio_pad_seconds: float = 0.0
    """Clips are padded up to a multiple of this many seconds in the prompt (0: no padding)."""
    extra: str | None = None
    """The `voice-assistant[...]` extra that brings `modules`, the packages its processor needs."""
    modules: tuple[str, ...] = ()

    def audio_tokens(self, seconds: float) -> int:
        """Prompt tokens of a clip of this length, for the history window's budget."""
        seconds = min(seconds, self.max_clip_seconds)
        if self.audio_pad_seconds:
            seconds = math.ceil(seconds / self.audio_pad_seconds) * self.audio_pad_seconds
        return math.ceil(seconds * self.audio_tokens_per_second) + 8  # + the clip's markers and label

    def check_installed(self) -> None:
        missing = [name for name in self.modules if importlib.util.find_spec(name) is None]
        if missing:
            raise ModelError(
                f"{self.title} needs {', '.join(missing)}: pip install 'voice-assistant[{self.extra}]'"
            )


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family(
            model_type="qwen2_audio",
            title="Qwen2-Audio-7B-Instruct",
            licence="Apache-2.0",
            parameters="8.4B",
            system_prompt=True,
            audio_tokens_per_second=25.0,
            max_clip_seconds=30.0,
        ),
        Family(
            model_type="voxtral",
            title="Voxtral-Mini-3B-2507",
            licence="Apache-2.0",
            parameters="4.7B",
            # Mistral's model card: "System prompts are not yet supported"; mistral-common (tokenizer v7)
            # rejects a system message in a chat that holds audio.
            system_prompt=False,
            # Whisper encoder at 50 Hz, projector stacks 4 frames: 12.5 Hz (tekken.json "frame_rate"),
            # each clip padded up to a multiple of 30 s (375 tokens).
            audio_tokens_per_second=12.5,
            # The processor splits long audio into 30 s encoder chunks; the 32k context holds ~30 min.
            max_clip_seconds=1800.0,
            audio_in_chat=True,
            audio_pad_seconds=30.0,
            extra="voxtral",
            modules=("mistral_common",),
        ),
    )
}


def family_of(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise ModelError(f"unsupported model family {model_type!r}; supported: {known}") from None
