"""The shared parts of one server process, built from Settings: VAD, model, store, events, metrics,
and the factory of session pipelines that every transport uses."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from voice_assistant.audio.pcm import MODEL_RATE
from voice_assistant.clock import utc_now
from voice_assistant.config import Settings
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.history.leases import Leases
from voice_assistant.history.retention import Retention
from voice_assistant.history.store import HistoryStore
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioLM
from voice_assistant.model.registry import ModelLoader, load_model
from voice_assistant.session.held_writes import HeldWrites
from voice_assistant.session.hub import EventHub
from voice_assistant.session.pipeline import Answering, Pipelines, TurnTaking
from voice_assistant.session.window import WindowPolicy
from voice_assistant.tts import Synthesizer, load_synthesizer
from voice_assistant.turn.batcher import VadBatcher
from voice_assistant.turn.semantic import load_end_of_turn
from voice_assistant.turn.vad import FRAME_SAMPLES, SileroModel

logger = logging.getLogger(__name__)

HELD_WRITES_AT_STOP_S = 5.0
"""How long a stopping server goes on trying to write what it holds for an unreachable store."""


def window_policy(settings: Settings, model: AudioLM) -> WindowPolicy:
    """What the model hears of the history; a model that takes fewer clips hears older turns as text."""
    audio_turns = settings.history.audio_turns
    if model.max_clips is not None:
        audio_turns = min(audio_turns, model.max_clips)
    return WindowPolicy(
        system_prompt=settings.model.system_prompt,
        audio_turns=audio_turns,
        max_turns=settings.history.max_turns,
        token_budget=settings.history.token_budget,
        audio_tokens=model.audio_tokens,
        summary_every=settings.history.summary_every,
        summary_max_tokens=settings.history.summary_max_tokens,
    )


class Assistant:
    def __init__(self, settings: Settings, *, model_loader: ModelLoader = load_model) -> None:
        self.settings = settings
        self.store = HistoryStore(settings.storage.resolved_database_url)
        self.vad = SileroModel()
        self.leases = Leases(self.store, ttl_s=settings.storage.lease_ttl_s)
        days = settings.storage.retention_days
        self.retention = Retention(self.store, days=days) if days is not None else None
        self.hub = EventHub.for_database(settings.storage.resolved_database_url)
        self.metrics = Metrics()
        self.held = HeldWrites(self.store, metrics=self.metrics, capacity_s=settings.storage.hold_seconds)
        self.pipelines = Pipelines(store=self.store, held=self.held, hub=self.hub, metrics=self.metrics)
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
        self.leases.start()
        self.hub.start()
        self.held.start()
        if self.retention is not None:
            self.retention.start()
        try:
            turns = settings.turns
            end_of_turn = await asyncio.to_thread(load_end_of_turn, turns.end_of_turn, turns.smart_turn_path)
            batch_s = turns.vad_batch_ms / 1000
            batcher = VadBatcher(self.vad, max_delay_s=batch_s) if batch_s else None
            turn_taking = TurnTaking(vad=self.vad, settings=turns, end_of_turn=end_of_turn, batcher=batcher)
            turn_taking.segmenter().feed(np.zeros(FRAME_SAMPLES * 4, dtype=np.float32))
            if end_of_turn is not None:
                await asyncio.to_thread(end_of_turn.complete_probability, np.zeros(MODEL_RATE, np.float32))
            synthesizer = await self._load_synthesizer()
            self._model = model = await asyncio.to_thread(self._model_loader, settings)
            if settings.web.warmup:
                await model.warm_up()
            await self.store.ping()
            if cut_off := await self.store.mark_cut_off(before=utc_now()):
                logger.warning("%d replies were cut off when a server stopped mid-reply: marked so", cut_off)
            self.pipelines.load(
                turn_taking,
                Answering(
                    model=model,
                    policy=window_policy(settings, model),
                    synthesizer=synthesizer,
                    reply_timeout_s=settings.model.reply_timeout_s,
                    speculative=turns.speculative_start,
                    transcripts=settings.history.transcripts,
                ),
            )
        except Exception as exc:
            logger.exception("start-up failed")
            self.startup_error = f"{type(exc).__name__}: {exc}"
            raise
        self.ready_after_s = time.monotonic() - self.started_at
        self.ready.set()
        logger.info("ready after %.2f s (model %s)", self.ready_after_s, settings.model.name)

    async def _load_synthesizer(self) -> Synthesizer | None:
        """Phone calls need a voice; without one the server still serves text, and calls are refused."""
        speech = self.settings.speech
        try:
            return await asyncio.to_thread(
                load_synthesizer,
                speech.engine,
                voice=speech.voice,
                speed=speech.speed,
                kokoro_model_path=speech.kokoro_model_path,
                kokoro_voices_path=speech.kokoro_voices_path,
            )
        except VoiceAssistantError as exc:
            logger.warning("no speech engine, so no phone calls: %s", exc)
            return None

    async def close(self) -> None:
        await self.held.close(timeout_s=HELD_WRITES_AT_STOP_S)
        if self._model is not None:
            await self._model.aclose()
        if self.retention is not None:
            await self.retention.close()
        await self.leases.close()
        await self.hub.close()
        self.store.close()

    async def new_session(self) -> str:
        return await self.store.create_session(now=utc_now())
