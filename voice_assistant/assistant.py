"""The shared parts of one server process, built from Settings: VAD, model, store, events, metrics,
and the factory of session pipelines that every transport uses."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from voice_assistant.audio.pcm import MODEL_RATE
from voice_assistant.clock import utc_now
from voice_assistant.config import Settings
from voice_assistant.errors import ModelError, VoiceAssistantError
from voice_assistant.history.store import HistoryStore
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioLM
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Answering, Pipelines, TurnTaking
from voice_assistant.session.window import WindowPolicy
from voice_assistant.tts import Synthesizer, load_synthesizer
from voice_assistant.turn.detector import TurnParams
from voice_assistant.turn.semantic import load_end_of_turn
from voice_assistant.turn.vad import FRAME_SAMPLES, SileroModel

logger = logging.getLogger(__name__)

ModelLoader = Callable[[Settings], AudioLM]


def load_model(settings: Settings) -> AudioLM:
    """The backend that `settings.backend` names; each is imported only when chosen."""
    return _BACKENDS[settings.backend](settings)


def _load_transformers(settings: Settings) -> AudioLM:
    """The transformers backend on `settings.model`; 'tiny' builds (once) and loads a local checkpoint."""
    from voice_assistant.model.hf_local import GenerationOptions, TransformersAudioLM
    from voice_assistant.model.tiny import cached_tiny_model

    source = settings.model
    if source == "tiny":
        source = str(cached_tiny_model(settings.data_dir, settings.tiny_family))
    return TransformersAudioLM.load(
        source,
        device=settings.device,
        dtype=settings.dtype,
        trust_remote_code=settings.trust_remote_code,
        options=GenerationOptions(
            max_new_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=settings.top_p
        ),
    )


def _load_openai(settings: Settings) -> AudioLM:
    """A client of the OpenAI-compatible server (vLLM) that serves `openai_model` (default: `model`)."""
    try:
        from voice_assistant.model.openai_compat import OpenAICompatAudioLM, Sampling, ServerOptions
    except ModuleNotFoundError as exc:
        if exc.name != "openai":
            raise
        raise ModelError("VA_BACKEND=openai needs the openai client: pip install 'openai>=1.52'") from exc

    key = settings.openai_api_key
    return OpenAICompatAudioLM(
        ServerOptions(
            base_url=settings.openai_base_url,
            model=settings.openai_model or settings.model,
            api_key=key.get_secret_value() if key else None,
            connect_timeout_s=settings.openai_connect_timeout_s,
            first_token_timeout_s=settings.openai_first_token_timeout_s,
            total_timeout_s=settings.openai_timeout_s,
            retries=settings.openai_retries,
            sampling=Sampling(
                max_tokens=settings.max_new_tokens, temperature=settings.temperature, top_p=settings.top_p
            ),
            audio_tokens_per_second=settings.openai_audio_tokens_per_second,
        )
    )


_BACKENDS: dict[str, ModelLoader] = {"transformers": _load_transformers, "openai": _load_openai}


def window_policy(settings: Settings, model: AudioLM) -> WindowPolicy:
    """What the model hears of the history; a model that takes fewer clips hears older turns as text."""
    audio_turns = settings.history_audio_turns
    if model.max_clips is not None:
        audio_turns = min(audio_turns, model.max_clips)
    return WindowPolicy(
        system_prompt=settings.system_prompt,
        audio_turns=audio_turns,
        max_turns=settings.history_max_turns,
        token_budget=settings.history_token_budget,
        audio_tokens=model.audio_tokens,
    )


class Assistant:
    def __init__(self, settings: Settings, *, model_loader: ModelLoader = load_model) -> None:
        self.settings = settings
        self.store = HistoryStore(settings.resolved_database_url)
        self.vad = SileroModel()
        self.hub = EventHub()
        self.metrics = Metrics()
        self.pipelines = Pipelines(store=self.store, hub=self.hub, metrics=self.metrics)
        self._model_loader = model_loader
        self._model: AudioLM | None = None
        self.ready = asyncio.Event()
        self.startup_error: str | None = None
        self.started_at = time.monotonic()
        self.ready_after_s: float | None = None

    @property
    def model(self) -> AudioLM:
        if self._model is None:
            raise RuntimeError("the model is not loaded yet")
        return self._model

    async def start(self) -> None:
        """Load and warm up the VAD and the model, then mark the server ready."""
        settings = self.settings
        try:
            end_of_turn = await asyncio.to_thread(
                load_end_of_turn, settings.end_of_turn, settings.smart_turn_path
            )
            turn_taking = TurnTaking(
                vad=self.vad,
                params=TurnParams.from_ms(
                    threshold=settings.vad_threshold,
                    neg_threshold=settings.vad_neg_threshold,
                    min_speech_ms=settings.min_speech_ms,
                    pause_ms=settings.pause_ms,
                    min_silence_ms=settings.min_silence_ms,
                    max_turn_seconds=settings.max_turn_seconds,
                ),
                pad_frames=round(settings.speech_pad_ms / 1000 / (FRAME_SAMPLES / MODEL_RATE)),
                end_of_turn=end_of_turn,
                end_of_turn_threshold=settings.end_of_turn_threshold,
            )
            turn_taking.segmenter().feed(np.zeros(FRAME_SAMPLES * 4, dtype=np.float32))
            if end_of_turn is not None:
                await asyncio.to_thread(end_of_turn.complete_probability, np.zeros(MODEL_RATE, np.float32))
            synthesizer = await self._load_synthesizer()
            self._model = model = await asyncio.to_thread(self._model_loader, settings)
            if settings.warmup:
                await model.warm_up()
            await self.store.ping()
            self.pipelines.load(
                turn_taking,
                Answering(
                    model=model,
                    policy=window_policy(settings, model),
                    synthesizer=synthesizer,
                    reply_timeout_s=settings.reply_timeout_s,
                    speculative=settings.speculative_start,
                    transcripts=settings.transcripts,
                ),
            )
        except Exception as exc:
            logger.exception("start-up failed")
            self.startup_error = f"{type(exc).__name__}: {exc}"
            raise
        self.ready_after_s = time.monotonic() - self.started_at
        self.ready.set()
        logger.info("ready after %.2f s (model %s)", self.ready_after_s, settings.model)

    async def _load_synthesizer(self) -> Synthesizer | None:
        """Phone calls need a voice; without one the server still serves text, and calls are refused."""
        settings = self.settings
        try:
            return await asyncio.to_thread(
                load_synthesizer,
                settings.tts,
                voice=settings.tts_voice,
                speed=settings.tts_speed,
                kokoro_model_path=settings.kokoro_model_path,
                kokoro_voices_path=settings.kokoro_voices_path,
            )
        except VoiceAssistantError as exc:
            logger.warning("no speech engine, so no phone calls: %s", exc)
            return None

    async def close(self) -> None:
        if self._model is not None:
            await self._model.aclose()
        self.store.close()

    async def new_session(self) -> str:
        return await self.store.create_session(now=utc_now())
