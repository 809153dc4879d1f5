"""The shared parts of one server process, built from Settings: VAD, model, store, events, metrics."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from voice_assistant.audio.pcm import MODEL_RATE
from voice_assistant.clock import utc_now
from voice_assistant.config import Settings
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.events import Event, Publish
from voice_assistant.history.store import HistoryStore
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioLM
from voice_assistant.model.registry import ModelLoader, load_model
from voice_assistant.session.conversation import Conversation
from voice_assistant.session.hub import EventHub
from voice_assistant.session.window import WindowPolicy
from voice_assistant.tts import Synthesizer, load_synthesizer
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.semantic import EndOfTurnModel, load_end_of_turn
from voice_assistant.turn.taker import TurnListener, TurnTaker
from voice_assistant.turn.vad import FRAME_SAMPLES, SileroModel

logger = logging.getLogger(__name__)

_BINDING_TTL_S = 120.0


class Assistant:
    def __init__(self, settings: Settings, *, model_loader: ModelLoader = load_model) -> None:
        self.settings = settings
        self.store = HistoryStore(settings.storage.resolved_database_url)
        self.vad = SileroModel()
        self.hub = EventHub()
        self.metrics = Metrics()
        self._model_loader = model_loader
        self._model: AudioLM | None = None
        self.end_of_turn: EndOfTurnModel | None = None
        self.synthesizer: Synthesizer | None = None
        self.live_calls = 0
        self._bindings: dict[str, tuple[str, float]] = {}
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
        try:
            self.segmenter().feed(np.zeros(FRAME_SAMPLES * 4, dtype=np.float32))
            self.end_of_turn = await asyncio.to_thread(
                load_end_of_turn, self.settings.turns.end_of_turn, self.settings.turns.smart_turn_path
            )
            if self.end_of_turn is not None:
                await asyncio.to_thread(
                    self.end_of_turn.complete_probability, np.zeros(MODEL_RATE, np.float32)
                )
            self.synthesizer = await self._load_synthesizer()
            self._model = await asyncio.to_thread(self._model_loader, self.settings)
            if self.settings.web.warmup:
                await self._model.warm_up()
            await self.store.ping()
        except Exception as exc:
            logger.exception("start-up failed")
            self.startup_error = f"{type(exc).__name__}: {exc}"
            raise
        self.ready_after_s = time.monotonic() - self.started_at
        self.ready.set()
        logger.info("ready after %.2f s (model %s)", self.ready_after_s, self.settings.model.name)

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
        if self._model is not None:
            await self._model.aclose()
        self.store.close()

    # -- per connection

    def segmenter(self) -> TurnSegmenter:
        return TurnSegmenter.from_settings(self.vad.stream(), self.settings.turns)

    def turn_taker(self, listener: TurnListener) -> TurnTaker:
        return TurnTaker(
            self.segmenter(),
            listener,
            end_of_turn=self.end_of_turn,
            threshold=self.settings.turns.end_of_turn_threshold,
        )

    def window_policy(self) -> WindowPolicy:
        audio_turns = self.settings.history.audio_turns
        if self.model.max_clips is not None:  # a model that takes fewer clips hears older turns as text
            audio_turns = min(audio_turns, self.model.max_clips)
        return WindowPolicy(
            system_prompt=self.settings.model.system_prompt,
            audio_turns=audio_turns,
            max_turns=self.settings.history.max_turns,
            token_budget=self.settings.history.token_budget,
            audio_tokens=self.model.audio_tokens,
        )

    async def open_conversation(self, session_id: str, publish: Publish) -> Conversation:
        def fan_out(event: Event) -> None:
            publish(event)
            self.hub.publish(session_id, event)

        return Conversation(
            session_id=session_id,
            next_index=await self.store.turn_count(session_id),
            store=self.store,
            model=self.model,
            policy=self.window_policy(),
            publish=fan_out,
            metrics=self.metrics,
            speculative=self.settings.turns.speculative_start,
            transcripts=self.settings.history.transcripts,
        )

    async def new_session(self) -> str:
        return await self.store.create_session(now=utc_now())

    # -- which session an offered connection belongs to

    def bind(self, webrtc_id: str, session_id: str) -> None:
        now = time.monotonic()
        for stale in [key for key, (_, at) in self._bindings.items() if now - at > _BINDING_TTL_S]:
            del self._bindings[stale]
        self._bindings[webrtc_id] = (session_id, now)

    def unbind(self, webrtc_id: str) -> str | None:
        binding = self._bindings.pop(webrtc_id, None)
        return binding[0] if binding else None

    def is_bound(self, webrtc_id: str) -> bool:
        return webrtc_id in self._bindings
