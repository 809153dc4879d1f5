"""The transformers backend: AutoProcessor + AutoModelForMultimodalLM, streamed from a worker thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import torch
import transformers
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
from voice_assistant.model.base import AudioPart, Message, Sampling, TextPart
from voice_assistant.model.families import Family, family_of
from voice_assistant.model.prompt import (
    clip_end,
    transcribing,
    transcription_request,
    wav_base64,
    with_system_role,
    within_clip_limit,
)

logger = logging.getLogger(__name__)


def generate_kwargs(sampling: Sampling) -> dict[str, Any]:
    """`generate()`'s arguments for the sampling: greedy at temperature 0 (transformers refuses 0)."""
    if sampling.temperature == 0.0:
        return {"max_new_tokens": sampling.max_new_tokens, "do_sample": False}
    return {
        "max_new_tokens": sampling.max_new_tokens,
        "do_sample": True,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
    }


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


def _model_class(family: Family, config: Any) -> Any:
    """The class that loads the checkpoint: the multimodal auto class, or (for the families it does not map)
    the transformers class that the config names in `architectures`."""
    if family.auto_class:
        return AutoModelForMultimodalLM
    names = getattr(config, "architectures", None) or []
    model_class = getattr(transformers, names[0], None) if names else None
    if model_class is None:
        raise ModelError(
            f"{family.title}: config.json names no transformers class in 'architectures' ({names})"
        )
    return model_class


def _check_sampling_rate(processor: Any) -> None:
    """Every clip is resampled to MODEL_RATE once, on the way in: a processor expecting another rate would
    hear it too fast or too slow."""
    extractor = getattr(processor, "feature_extractor", None) or getattr(processor, "audio_processor", None)
    rate = getattr(extractor, "sampling_rate", MODEL_RATE)
    if rate != MODEL_RATE:
        raise ModelError(
            f"the checkpoint's audio processor expects {rate} Hz; this server feeds {MODEL_RATE} Hz"
        )


class TransformersAudioLM:
    """One model on one device. Generations are queued: one runs at a time, in a worker thread."""

    def __init__(
        self,
        *,
        processor: Any,
        model: Any,
        family: Family,
        name: str,
        sampling: Sampling,
    ) -> None:
        self._processor = processor
        self._model = model
        self.family = family
        self.max_clips = family.max_clips
        self.name = name
        self._sampling = sampling
        self._lock = asyncio.Lock()

    @classmethod
    def load(
        cls,
        source: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        sampling: Sampling,
    ) -> TransformersAudioLM:
        """Blocking: call from a thread. `source` is a hub id or a local directory."""
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        family = family_of(config.model_type)
        family.check_installed()
        torch_device = resolve_device(device)
        processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust_remote_code)
        _check_sampling_rate(processor)
        model = _model_class(family, config).from_pretrained(
            source, dtype=resolve_dtype(dtype, torch_device), trust_remote_code=trust_remote_code
        )
        if family.adapter:  # the only adapter loaded, so the active one
            model.load_adapter(source, adapter_name="audio", adapter_kwargs={"subfolder": family.adapter})
        model.to(torch_device).eval()
        logger.info("loaded %s (%s) on %s", source, family.model_type, torch_device)
        return cls(
            processor=processor,
            model=model,
            family=family,
            name=source,
            sampling=sampling,
        )

    def audio_tokens(self, seconds: float) -> int:
        return self.family.audio_tokens(seconds)

    # -- input

    def _chat(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        chat: list[dict[str, Any]] = []
        for message in with_system_role(messages, self.family):
            if message.role != "user":
                chat.append({"role": message.role, "content": message.text})
                continue
            content: list[dict[str, Any]] = []
            for part in message.parts:
                if isinstance(part, AudioPart):
                    content.append(self._audio_content(part))
                elif isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
            chat.append({"role": "user", "content": self._user_content(content)})
        return chat

    def _user_content(self, content: list[dict[str, Any]]) -> list[dict[str, Any]] | str:
        """Typed parts, or one string with the family's audio placeholder where its template takes text."""
        placeholder = self.family.audio_placeholder
        if placeholder is None:
            return content
        return "".join(placeholder if item["type"] == "audio" else item["text"] for item in content)

    def _audio_content(self, part: AudioPart) -> dict[str, Any]:
        if self.family.audio_in_chat:
            return {
                "type": "audio",
                "base64": wav_base64(clip_end(part.samples, self.family), subtype="FLOAT"),
            }
        return {"type": "audio"}

    def build_inputs(self, messages: Sequence[Message]) -> Any:
        """Processor tensors: token ids with a placeholder per audio token, and every clip's features."""
        messages = within_clip_limit(messages, self.family.max_clips)
        chat = self._chat(messages)
        if self.family.audio_in_chat:
            tokens = self._processor.apply_chat_template(
                chat, tokenize=True, return_dict=True, return_tensors="pt"
            )
            return tokens.to(self._model.device)
        # Some checkpoints (Granite Speech) keep their chat template on the tokenizer only.
        template = self._processor if self._processor.chat_template else self._processor.tokenizer
        text = template.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
        clips = [clip_end(part.samples, self.family) for message in messages for part in message.audio]
        kwargs: dict[str, Any] = {"text": text, "return_tensors": "pt"}
        if clips:
            kwargs.update(audio=clips, sampling_rate=MODEL_RATE)
        inputs = self._processor(**kwargs)
        return inputs.to(self._model.device)

    def _transcription_inputs(self, audio: Samples) -> Any:
        """The family's own transcription request where it has one, else its prompt beside the clip."""
        native = self.family.transcription_request
        if native is None:
            return self.build_inputs(transcription_request(audio, self.family))
        return native(self._processor, clip_end(audio, self.family), self.name).to(self._model.device)

    # -- generation

    def _generate(
        self,
        inputs_of: Callable[[], Any],
        kwargs: dict[str, Any],
        stop: threading.Event,
        streamer: Any = None,
    ) -> tuple[Any, Any]:
        """In the worker thread: the inputs (built there, off the event loop) and generate()'s output ids."""
        try:
            inputs = inputs_of()
            with torch.inference_mode():
                output = self._model.generate(
                    **inputs,
                    **kwargs,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopOnEvent(stop)]),
                )
            return inputs, output
        finally:
            if streamer is not None:
                streamer.end()

    @contextlib.asynccontextmanager
    async def _exclusive(
        self, work: Callable[[threading.Event], tuple[Any, Any]]
    ) -> AsyncIterator[asyncio.Task[tuple[Any, Any]]]:
        """`work` in a worker thread, holding the device: failures surface as `ModelError`, and leaving the
        block (done, failed, cancelled) stops it between two tokens and waits until the thread is out of
        generate(), so generations never overlap."""
        async with self._lock:
            stop = threading.Event()
            worker = asyncio.create_task(asyncio.to_thread(work, stop))
            try:
                yield worker
            except (ModelError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                logger.exception("generation failed", extra={"model": self.name})
                raise ModelError(f"the model failed: {type(exc).__name__}: {exc}") from exc
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.shield(worker)

    async def stream_reply(
        self, messages: Sequence[Message], *, max_new_tokens: int | None = None
    ) -> AsyncIterator[str]:
        kwargs = generate_kwargs(self._sampling)
        if max_new_tokens is not None:
            kwargs["max_new_tokens"] = max_new_tokens
        streamer = AsyncTextIteratorStreamer(
            self._processor.tokenizer, skip_prompt=True, skip_special_tokens=True
        )

        def work(stop: threading.Event) -> tuple[Any, Any]:
            return self._generate(lambda: self.build_inputs(messages), kwargs, stop, streamer)

        async with self._exclusive(work) as worker:
            async for text in streamer:
                if text:
                    yield text
            await worker

    async def transcribe(self, audio: Samples) -> str:
        """The same model asked for the words, greedily whatever the reply's sampling, through the family's
        own transcription request where it has one; queued like a reply."""
        kwargs = generate_kwargs(transcribing(audio))

        def work(stop: threading.Event) -> tuple[Any, Any]:
            return self._generate(lambda: self._transcription_inputs(audio), kwargs, stop)

        async with self._exclusive(work) as worker:
            inputs, output = await worker
        words = output[:, inputs["input_ids"].shape[1] :]
        decoded = self._processor.batch_decode(
            words, skip_special_tokens=True, **self.family.transcript_decode
        )
        return str(decoded[0]).strip()

    async def aclose(self) -> None:
        """Nothing to release: the weights go with the process."""

    async def warm_up(self) -> None:
        silence = AudioPart(np.zeros(MODEL_RATE, dtype=np.float32))
        async for _ in self.stream_reply([Message("user", (silence,))], max_new_tokens=2):
            pass
