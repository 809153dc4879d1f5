"""What differs between audio-language model families, in one table instead of branches in the code."""

from __future__ import annotations

from dataclasses import dataclass


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
    """Longest audio clip the encoder takes at once; longer turns are trimmed to their end."""


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
    )
}


def family_of(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise ValueError(f"unsupported model family {model_type!r}; supported: {known}") from None
