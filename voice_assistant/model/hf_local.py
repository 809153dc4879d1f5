"""The transformers backend: AutoProcessor + AutoModelForMultimodalLM, streamed from a worker thread."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import soundfile as sf
import torch
from transformers import (
    AsyncTextIteratorStreamer,
    AutoConfig,
    AutoModelForMultimodalLM,
    AutoProcessor,
    StoppingCriteria,
    StoppingCriteriaList,
)

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.errors import ModelError
from voice_assistant.model.base import AudioPart, Message, TextPart
from voice_assistant.model.families import Family, family_of

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationOptions:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9

    def as_kwargs(self) -> dict[str, Any]:
        if self.temperature == 0.0:
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False}
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": True,
            "temperature": self.temperature,
            "top_p": self.top_p,
        }


TRANSCRIPT_TOKENS = 200
"""Enough for a 30 s turn of speech."""


class _StopOnEvent(StoppingCriteria):
    """Lets the event loop stop `generate` between two tokens (barge-in, a vanished client)."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool)  # type: ignore[return-value]


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)  # type: ignore[no-any-return]


def _wav_base64(samples: np.ndarray) -> str:
    """A clip as base64 WAV (float, lossless): how mistral-common's chat takes audio held in memory."""
    buffer = io.BytesIO()
    sf.write(buffer, samples, MODEL_RATE, format="WAV", subtype="FLOAT")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class TransformersAudioLM:
    """One model on one device. Generations are queued: one runs at a time, in a worker thread."""

    def __init__(
        self,
        *,
        processor: Any,
        model: Any,
        family: Family,
        name: str,
        options: GenerationOptions,
    ) -> None:
        self._processor = processor
        self._model = model
        self.family = family
        self.name = name
        self._options = options
        self._lock = asyncio.Lock()

    @classmethod
    def load(
        cls,
        source: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        options: GenerationOptions | None = None,
    ) -> TransformersAudioLM:
        """Blocking: call from a thread. `source` is a hub id or a local directory."""
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        family = family_of(config.model_type)
        family.check_installed()
        torch_device = resolve_device(device)
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = AutoModelForMultimodalLM.from_pretrained(
            source, dtype=resolve_dtype(dtype, torch_device), trust_remote_code=trust_remote_code
        )
        model.to(torch_device).eval()
        logger.info("loaded %s (%s) on %s", source, family.model_type, torch_device)
        return cls(
            processor=processor,
            model=model,
            family=family,
            name=source,
            options=options or GenerationOptions(),
        )

    def audio_tokens(self, seconds: float) -> int:
        return self.family.audio_tokens(seconds)

    # -- input

    def _chat(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        chat: list[dict[str, Any]] = []
        pending_system = ""
        for message in messages:
            if message.role == "system" and not self.family.system_prompt:
                pending_system = message.text
                continue
            content: list[dict[str, Any]] = []
            if pending_system and message.role == "user":
                content.append({"type": "text", "text": pending_system + "\n\n"})
                pending_system = ""
            for part in message.parts:
                if isinstance(part, AudioPart):
                    content.append(self._audio_content(part))
                elif isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
            if message.role == "user":
                chat.append({"role": message.role, "content": content})
            else:
                chat.append({"role": message.role, "content": message.text})
        return chat

    def _clip(self, part: AudioPart) -> np.ndarray:
        """The end of the turn, as much as the family's encoder takes."""
        return np.asarray(part.samples[-int(self.family.max_clip_seconds * MODEL_RATE) :], dtype=np.float32)

    def _audio_content(self, part: AudioPart) -> dict[str, Any]:
        if self.family.audio_in_chat:
            return {"type": "audio", "base64": _wav_base64(self._clip(part))}
        return {"type": "audio"}

    def build_inputs(self, messages: Sequence[Message]) -> Any:
        """Processor tensors: token ids with a placeholder per audio token, and every clip's features."""
        chat = self._chat(messages)
        if self.family.audio_in_chat:
            tokens = self._processor.apply_chat_template(
                chat, tokenize=True, return_dict=True, return_tensors="pt"
            )
            return tokens.to(self._model.device)
        text = self._processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        clips = [self._clip(part) for message in messages for part in message.audio]
        kwargs: dict[str, Any] = {"text": text, "return_tensors": "pt"}
        if clips:
            kwargs.update(audio=clips, sampling_rate=MODEL_RATE)
        inputs = self._processor(**kwargs)
        return inputs.to(self._model.device)

    # -- generation

    def _generate(
        self,
        messages: Sequence[Message],
        streamer: AsyncTextIteratorStreamer,
        stop: threading.Event,
        max_new_tokens: int | None,
    ) -> None:
        try:
            inputs = self.build_inputs(messages)
            kwargs = self._options.as_kwargs()
            if max_new_tokens is not None:
                kwargs["max_new_tokens"] = max_new_tokens
            with torch.inference_mode():
                self._model.generate(
                    **inputs,
                    **kwargs,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                )
        finally:
            streamer.end()

    async def stream_reply(
        self, messages: Sequence[Message], *, max_new_tokens: int | None = None
    ) -> AsyncIterator[str]:
        async with self._lock:
            stop = threading.Event()
            streamer = AsyncTextIteratorStreamer(
                self._processor.tokenizer, skip_prompt=True, skip_special_tokens=True
            )
            worker = asyncio.create_task(
                asyncio.to_thread(self._generate, messages, streamer, stop, max_new_tokens)
            )
            try:
                async for text in streamer:
                    if text:
                        yield text
                await worker
            except ModelError:
                raise
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                logger.exception("generation failed", extra={"model": self.name})
                raise ModelError(f"the model failed: {type(exc).__name__}: {exc}") from exc
            finally:
                stop.set()
                # Hold the device until the thread is out of generate(), so generations never overlap.
                with contextlib.suppress(Exception):
                    await asyncio.shield(worker)

    async def transcribe(self, audio: Samples) -> str:
        """The same model asked for the words (the family's prompt), greedily, in the queue like a reply."""
        request = [Message("user", (AudioPart(audio), TextPart(self.family.transcribe_prompt)))]
        pieces = [piece async for piece in self.stream_reply(request, max_new_tokens=TRANSCRIPT_TOKENS)]
        return "".join(pieces).strip()

    async def warm_up(self) -> None:
        silence = AudioPart(np.zeros(MODEL_RATE, dtype=np.float32))
        async for _ in self.stream_reply([Message("user", (silence,))], max_new_tokens=2):
            pass
