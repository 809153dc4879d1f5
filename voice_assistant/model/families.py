"""What differs between audio-language model families, in one table instead of branches in the code.

Each row also carries what `voice-assistant models` prints about the family's reference checkpoint:
licence, size, context, how much audio a turn may hold, and what to know before choosing it.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.errors import ModelError

CLIP_MARKER_TOKENS = 8
"""A clip's start and end markers and its label around its audio tokens."""

TranscriptionRequest = Callable[[Any, Samples, str], Any]
"""(processor, clip, model name) -> model inputs of the family's own transcription prompt."""


def _voxtral_transcription(processor: Any, clip: Samples, model: str) -> Any:
    """mistral-common's TranscriptionRequest: the clip, then `[TRANSCRIBE]`; the model finds the language."""
    return processor.apply_transcription_request(
        audio=[clip], model_id=model, sampling_rate=MODEL_RATE, format=["wav"], return_tensors="pt"
    )


def _audioflamingo3_transcription(processor: Any, clip: Samples, model: str) -> Any:
    """The processor's default ASR prompt ("Transcribe the input speech.") around the clip."""
    return processor.apply_transcription_request(audio=[clip])


@dataclass(frozen=True)
class Family:
    model_type: str
    """The transformers `model_type` in the checkpoint's config.json."""
    title: str
    checkpoint: str
    """The reference checkpoint on the hub, whose facts this row gives."""
    licence: str
    parameters: str
    context_tokens: int
    system_prompt: bool
    """False: the system prompt is folded into the first user message."""
    audio_tokens_per_second: float
    """Prompt tokens per second of audio, for the history window's budget."""
    max_clip_seconds: float
    """Longest clip of one turn the model takes (the encoder's window, or more where the processor splits
    long audio into windows); longer turns are trimmed to their end."""
    max_clips: int | None = None
    """Clips one prompt may hold (None: any number). Older clips beyond it reach the model as a note."""
    audio_in_chat: bool = False
    """True: each clip rides inside the chat and the processor's `apply_chat_template` tokenizes both
    (Voxtral: mistral-common's Tekken has no text template). False: the chat template renders text with
    audio placeholders and the processor takes the clips beside it."""
    audio_placeholder: str | None = None
    """Set where the chat template takes text content only (Granite's concatenates strings): each clip is
    written into the text as this token. None: content goes to the template as typed parts."""
    transcribe_prompt: str = "Write down exactly what is said in this audio, and nothing else."
    """How the family is asked for a transcript of a turn (beside the turn's audio)."""
    transcription_request: TranscriptionRequest | None = None
    """The family's native transcription request, used instead of `transcribe_prompt` where it has one."""
    transcript_decode: Mapping[str, Any] = field(default_factory=dict)
    """Keyword arguments of the processor's `batch_decode` for a transcript (AF3 strips its framing)."""
    audio_pad_seconds: float = 0.0
    """Clips are padded up to a multiple of this many seconds in the prompt (0: no padding)."""
    auto_class: bool = True
    """False: `AutoModelForMultimodalLM` does not map this model_type; the class that the checkpoint's
    config names in `architectures` loads it (a transformers class: no remote code)."""
    adapter: str | None = None
    """Subfolder of a PEFT LoRA adapter the checkpoint ships for audio, loaded and activated with it."""
    extra: str | None = None
    """The `voice-assistant[...]` extra that brings `modules`, the packages its processor needs."""
    modules: tuple[str, ...] = ()
    notes: str = ""
    test_environment: str | None = None
    """Where its tiny checkpoint is tested when not in the main test environment (None: there)."""

    def audio_tokens(self, seconds: float) -> int:
        """Prompt tokens of a clip of this length, for the history window's budget."""
        seconds = min(seconds, self.max_clip_seconds)
        if self.audio_pad_seconds:
            seconds = math.ceil(seconds / self.audio_pad_seconds) * self.audio_pad_seconds
        return math.ceil(seconds * self.audio_tokens_per_second) + CLIP_MARKER_TOKENS

    def check_installed(self) -> None:
        """ModelError naming the missing packages and the extra that brings them, before anything is
        built or loaded (a build without them would stop half way)."""
        missing = [name for name in self.modules if not _installed(name)]
        if missing:
            raise ModelError(
                f"{self.title} needs {', '.join(missing)}: pip install 'voice-assistant[{self.extra}]'"
            )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that fails, or one blocked (None in sys.modules)
        return False


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family(
            model_type="qwen2_audio",
            title="Qwen2-Audio-7B-Instruct",
            checkpoint="Qwen/Qwen2-Audio-7B-Instruct",
            licence="Apache-2.0",
            parameters="8.4B",
            context_tokens=8192,
            system_prompt=True,
            audio_tokens_per_second=25.0,
            max_clip_seconds=30.0,
            notes="The default: trained for voice chat, several turns each with its own audio.",
        ),
        Family(
            model_type="voxtral",
            title="Voxtral-Mini-3B-2507",
            checkpoint="mistralai/Voxtral-Mini-3B-2507",
            licence="Apache-2.0",
            parameters="4.7B",
            context_tokens=32768,
            # Mistral's model card: "System prompts are not yet supported"; mistral-common (tokenizer v7)
            # rejects a system message in a chat that holds audio.
            system_prompt=False,
            # Whisper encoder at 50 Hz, projector stacks 4 frames: 12.5 Hz (tekken.json "frame_rate"),
            # each clip padded up to a multiple of 30 s (375 tokens).
            audio_tokens_per_second=12.5,
            # The processor splits long audio into 30 s encoder chunks; the 32k context holds ~30 min.
            max_clip_seconds=1800.0,
            audio_in_chat=True,
            transcription_request=_voxtral_transcription,
            audio_pad_seconds=30.0,
            extra="voxtral",
            modules=("mistral_common",),
            notes="No system prompt (it leads the first user turn). Transcribes with its own [TRANSCRIBE] "
            "request. Model card: up to 30 min of audio for transcription, 40 min for understanding.",
        ),
        Family(
            model_type="audioflamingo3",
            title="Audio Flamingo 3",
            checkpoint="nvidia/audio-flamingo-3-hf",
            licence="NVIDIA OneWay Noncommercial License (research use only)",
            parameters="8.3B",
            context_tokens=32768,
            system_prompt=True,
            # Whisper encoder at 50 Hz, average-pooled by 2: 750 tokens per 30 s window, unpadded.
            audio_tokens_per_second=25.0,
            # The processor takes at most 20 windows of 30 s and truncates the rest.
            max_clip_seconds=600.0,
            # The processor expands exactly one `<sound>` per prompt and refuses more.
            max_clips=1,
            transcription_request=_audioflamingo3_transcription,
            transcript_decode={"strip_prefix": True},
            auto_class=False,
            notes="Hears only the newest turn: one clip per prompt, so earlier turns reach it as text "
            "(transcripts). Weights for non-commercial research only. Speech, sounds and music.",
        ),
        Family(
            model_type="granite_speech",
            title="Granite Speech 3.3 8B",
            checkpoint="ibm-granite/granite-speech-3.3-8b",
            licence="Apache-2.0",
            parameters="8.6B",
            context_tokens=131072,
            system_prompt=True,
            # Two 100 Hz mel frames per encoder frame; the projector turns each 15-frame window (0.3 s)
            # into 3 tokens.
            audio_tokens_per_second=10.0,
            audio_pad_seconds=0.3,
            max_clip_seconds=1800.0,
            audio_placeholder="<|audio|>",
            transcribe_prompt="can you transcribe the speech into a written format?",
            adapter=None,  # its LoRA adapter sits beside the weights: transformers loads it (with peft)
            extra="granite-speech",
            modules=("torchaudio", "peft"),
            notes="A speech recognition and translation model (IBM: two-pass design): it writes down "
            "what it hears rather than answering it. Needs torchaudio (mel features) and peft: every "
            "generate() switches its audio LoRA on or off, which transformers 5.24 allows only with "
            "peft >= 0.22 (the extra keeps transformers below 5.24 until PyPI has it).",
            test_environment="beside torch 2.11.0 and torchaudio 2.11.0 (.ci/run's second environment: "
            "no torchaudio on PyPI loads beside the CPU build of torch 2.13)",
        ),
        Family(
            model_type="phi4_multimodal",
            title="Phi-4-multimodal-instruct",
            checkpoint="microsoft/Phi-4-multimodal-instruct",
            licence="MIT",
            parameters="5.6B",
            context_tokens=131072,
            system_prompt=True,
            # 80-bin mel at 100 Hz, the encoder reduces time by 8.
            audio_tokens_per_second=12.5,
            max_clip_seconds=1800.0,
            transcribe_prompt="Transcribe the audio clip into text.",
            adapter="speech-lora",
            extra="phi4-multimodal",
            modules=("torchvision", "peft"),
            notes="Hears audio only through its speech LoRA (peft). The hub's main branch is remote code "
            "(model_type phi4mm): use its transformers-format revision (refs/pr/70) as a local path. Its "
            "processor also holds an image processor, which needs torchvision.",
            test_environment="beside torch 2.11.0 and torchvision 0.26.0 (.ci/run's second environment: "
            "PyPI's torchvision for torch 2.13 is a CUDA build whose operators fail to load beside its CPU "
            "build)",
        ),
    )
}


def family_of(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(FAMILIES)  # in the table's order: the default first
        raise ModelError(f"unsupported model family {model_type!r}; supported: {known}") from None
