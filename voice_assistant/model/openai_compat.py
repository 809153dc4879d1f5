"""The OpenAI-compatible backend: a vLLM server (or any server that takes `input_audio` parts in chat
completions) hears the conversation and streams the reply back over HTTP.

This is how one GPU serves many sessions: the server batches the requests of all sessions, so nothing
here queues. A failed request (connection error, 429, 5xx) is retried only before its first text (a retry
after it would repeat words the user already has); a server that stalls past the first-token timeout is not
retried either (the user has waited that long already). So a `ModelError` from here is final: the session
reports it and goes on with the next turn. Closing the reply's iterator closes the HTTP stream, which is how
the server learns to stop generating (vLLM aborts a request whose client went away).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionContentPartParam,
    ChatCompletionMessageParam,
)

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.config import Settings
from voice_assistant.errors import ModelError
from voice_assistant.model.base import AudioPart, Message, Sampling, TextPart
from voice_assistant.model.families import CLIP_MARKER_TOKENS, FAMILIES, Family
from voice_assistant.model.prompt import transcribing, transcription_request, wav_base64, with_system_role

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

DEFAULT_AUDIO_TOKENS_PER_SECOND = 25.0
"""For a served model of unknown family: the highest rate of the families we know (Qwen2-Audio).
Counting too many only drops old turns sooner; counting too few overflows the server's context (400)."""

SERVED_ONLY_RATES = {"ultravox": 6.25}
"""Prompt tokens per second of audio of families only a server runs (no native transformers class).
Ultravox: Whisper's encoder gives 50 frames/s and the projector stacks 8 of them (`stack_factor`)."""

WARMING_UP = Sampling.greedy(1)


@dataclass(frozen=True)
class ServerOptions:
    """Whom to ask, how patiently, and what for. Frozen: one value per process. Its values come from
    `Settings` (`from_settings`), which holds their defaults."""

    base_url: str
    """Up to the version, e.g. http://127.0.0.1:8000/v1 (as `vllm serve` prints it)."""
    model: str
    """The name the server serves the model under (`vllm serve NAME`, or its `--served-model-name`)."""
    api_key: str | None
    """vLLM's `--api-key`; without one the server takes any key."""
    connect_timeout_s: float
    first_token_timeout_s: float
    """From sending a request to its first text: a server that stalls this long has failed the reply
    (not retried: the user has waited long enough)."""
    total_timeout_s: float
    """From sending a request to its last text."""
    retries: int
    """Extra attempts after a connection error, 429 or 5xx, before any text arrived."""
    sampling: Sampling
    audio_tokens_per_second: float | None
    """Overrides the rate known for the model's family."""
    backoff_s: float = 0.5
    """The wait before the first retry; it doubles with each further one (no setting: tests shorten it)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerOptions:
        """The server of `settings.backend`, serving `served_model` (default: `settings.model.name`)."""
        backend = settings.backend
        return cls(
            base_url=backend.base_url,
            model=backend.served_model or settings.model.name,
            api_key=backend.api_key.get_secret_value() if backend.api_key else None,
            connect_timeout_s=backend.connect_timeout_s,
            first_token_timeout_s=backend.first_token_timeout_s,
            total_timeout_s=backend.timeout_s,
            retries=backend.retries,
            sampling=Sampling.from_settings(settings.model),
            audio_tokens_per_second=backend.audio_tokens_per_second,
        )


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def served_family(model: str) -> Family | None:
    """The family whose `model_type` the served model's name spells out (`Qwen/Qwen2-Audio-7B-Instruct`:
    qwen2_audio), if any: the server hides the checkpoint's config, so its name is all there is."""
    name = _squash(model)
    return next((family for key, family in FAMILIES.items() if _squash(key) in name), None)


def _served_only_rate(model: str) -> float:
    name = _squash(model)
    known = (rate for key, rate in SERVED_ONLY_RATES.items() if key in name)
    return next(known, DEFAULT_AUDIO_TOKENS_PER_SECOND)


def _content_part(part: AudioPart | TextPart) -> ChatCompletionContentPartParam:
    if isinstance(part, AudioPart):
        audio = wav_base64(part.samples, subtype="PCM_16")
        return {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}
    return {"type": "text", "text": part.text}


def chat_messages(messages: Sequence[Message], family: Family | None) -> list[ChatCompletionMessageParam]:
    """Our messages as chat completion messages: user turns as parts (audio and text), the rest as text."""
    chat: list[ChatCompletionMessageParam] = []
    for message in with_system_role(messages, family):
        if message.role == "user":
            chat.append({"role": "user", "content": [_content_part(part) for part in message.parts]})
        elif message.role == "assistant":
            chat.append({"role": "assistant", "content": message.text})
        else:
            chat.append({"role": "system", "content": message.text})
    return chat


def _delta_text(chunk: ChatCompletionChunk) -> str:
    return (chunk.choices[0].delta.content or "") if chunk.choices else ""


async def _next_text(stream: AsyncStream[ChatCompletionChunk]) -> str | None:
    """The next non-empty piece of text (role-only and usage chunks carry none); None at the end."""
    while True:
        try:
            chunk = await anext(stream)
        except StopAsyncIteration:
            return None
        if text := _delta_text(chunk):
            return text


def _retryable(exc: openai.APIError) -> bool:
    """Worth another try: the server was not reached, is overloaded (429), or failed itself (5xx)."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code == 429 or exc.status_code >= 500
    return isinstance(exc, openai.APIConnectionError)


def _server_message(exc: openai.APIStatusError) -> str:
    """What the server said: vLLM's error body is `{"message": ...}`, OpenAI's `{"error": {"message"}}`
    (the client has already unwrapped the latter)."""
    if isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str):
        return str(exc.body["message"])
    return exc.message


class OpenAICompatAudioLM:
    """A model behind an OpenAI-compatible server. Requests run concurrently: the server batches them."""

    def __init__(self, options: ServerOptions) -> None:
        self._options = options
        self.name = options.model
        self.family = served_family(options.model)
        self.max_clips = self.family.max_clips if self.family else None
        """The family's own limit; the server's (vLLM `--limit-mm-per-prompt`) is the operator's to match."""
        self._audio_rate = options.audio_tokens_per_second or _served_only_rate(options.model)
        self._where = f"the model server at {options.base_url.rstrip('/')}"
        self._client = AsyncOpenAI(
            base_url=options.base_url,
            api_key=options.api_key or "EMPTY",  # vLLM's convention for "no key"; the client needs one
            max_retries=0,  # retried here, and only until the first text
            timeout=openai.Timeout(options.total_timeout_s, connect=options.connect_timeout_s),
        )

    def audio_tokens(self, seconds: float) -> int:
        if self._options.audio_tokens_per_second is None and self.family is not None:
            return self.family.audio_tokens(seconds)  # its own count: clips capped, or padded
        return math.ceil(seconds * self._audio_rate) + CLIP_MARKER_TOKENS

    def stream_reply(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        return self._stream(messages, self._options.sampling)

    async def transcribe(self, audio: Samples) -> str:
        """The same server asked for the words (the family's prompt), greedily."""
        request = transcription_request(audio, self.family)
        return "".join([piece async for piece in self._stream(request, transcribing(audio))]).strip()

    async def warm_up(self) -> None:
        """Ready means: the server answers, serves this model under this name, and takes audio (one token
        about half a second of silence). A failure here keeps /readyz failing, with the reason."""
        served = await self._with_retries(self._served_models)
        if self._options.model not in served:
            raise ModelError(
                f"{self._where} does not serve {self._options.model!r} (it serves {', '.join(served)}); "
                "set VA_OPENAI_MODEL to one of those"
            )
        silence = AudioPart(np.zeros(MODEL_RATE // 2, dtype=np.float32))
        async for _ in self._stream([Message("user", (silence,))], WARMING_UP):
            pass

    async def aclose(self) -> None:
        """Close the pooled connections to the server."""
        await self._client.close()

    # -- one request

    async def _stream(self, messages: Sequence[Message], sampling: Sampling) -> AsyncIterator[str]:
        deadline = asyncio.get_running_loop().time() + self._options.total_timeout_s
        chat = chat_messages(messages, self.family)
        stream, text = await self._with_retries(lambda: self._first_text(chat, sampling))
        try:
            while text is not None:
                yield text
                text = await self._next_text_by(stream, deadline)
        except openai.APIError as exc:  # not retried: text was already delivered
            raise ModelError(f"{self._where} broke off the reply: {exc.message}") from exc
        finally:
            await stream.close()  # mid-reply (barge-in, cancel): the server sees the disconnect and stops

    async def _first_text(
        self, chat: list[ChatCompletionMessageParam], sampling: Sampling
    ) -> tuple[AsyncStream[ChatCompletionChunk], str | None]:
        """Send the request and wait for its first text, within the first-token timeout."""
        timeout = self._options.first_token_timeout_s
        try:
            async with asyncio.timeout(timeout):
                stream = await self._client.chat.completions.create(
                    model=self._options.model,
                    messages=chat,
                    stream=True,
                    max_tokens=sampling.max_new_tokens,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                )
                try:
                    return stream, await _next_text(stream)
                except BaseException:
                    await stream.close()
                    raise
        except TimeoutError:
            raise ModelError(f"{self._where} sent no text within {timeout:g} s") from None

    async def _next_text_by(self, stream: AsyncStream[ChatCompletionChunk], deadline: float) -> str | None:
        # The timeout wraps the read, never the generator's yield: it must not cancel the consumer's code.
        try:
            async with asyncio.timeout_at(deadline):
                return await _next_text(stream)
        except TimeoutError:
            raise ModelError(
                f"{self._where} did not finish the reply within {self._options.total_timeout_s:g} s"
            ) from None

    async def _served_models(self) -> list[str]:
        page = await self._client.models.list()
        return [model.id for model in page.data]

    async def _with_retries(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """Retry connection errors, 429 and 5xx with exponential backoff; the rest fail at once."""
        tries = 1
        while True:
            try:
                return await attempt()
            except openai.APIError as exc:
                if tries > self._options.retries or not _retryable(exc):
                    raise self._failure(exc, tries) from exc
                delay = self._options.backoff_s * 2 ** (tries - 1)
                logger.warning(
                    "model server call failed; retrying",
                    extra={"server": self._options.base_url, "error": str(exc), "delay_s": delay},
                )
                await asyncio.sleep(delay)
            tries += 1

    def _failure(self, exc: openai.APIError, tries: int) -> ModelError:
        """What failed and where, in words the client's `error` event can show as they are."""
        if isinstance(exc, openai.APIStatusError):
            message = f"{self._where} answered {exc.status_code}: {_server_message(exc)}"
        elif isinstance(exc, openai.APIConnectionError):
            attempts = f"{tries} attempt{'s' if tries > 1 else ''}"
            message = f"{self._where} is unreachable ({exc.__cause__ or exc.message}; {attempts})"
        else:
            message = f"{self._where} failed: {exc.message}"
        return ModelError(message)
