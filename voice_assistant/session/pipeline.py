"""One session's pipeline, wired the same way for every transport: turn-taking -> conversation -> voice.

A transport (a WebRTC connection, a phone call) asks `Pipelines.open` for the pipeline of a session,
feeds it 16 kHz audio as it arrives and closes it when the client goes; events go to the `publish` it
passed (and to the session's SSE subscribers), and spoken replies to the sink it passed, if any.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from voice_assistant.audio.pcm import Samples
from voice_assistant.clock import utc_now
from voice_assistant.config import TurnSettings
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.events import ErrorRaised, Event, Publish
from voice_assistant.history.store import HistoryStore
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioLM
from voice_assistant.session.conversation import Conversation
from voice_assistant.session.held_writes import HeldWrites
from voice_assistant.session.hub import EventHub
from voice_assistant.session.interruption import Interruptions
from voice_assistant.session.sink import AudioSink
from voice_assistant.session.speech import Voice
from voice_assistant.session.window import WindowPolicy
from voice_assistant.tts.base import Synthesizer
from voice_assistant.turn.batcher import VadBatcher
from voice_assistant.turn.policy import EndOfTurnPolicy
from voice_assistant.turn.segmenter import TurnSegmenter
from voice_assistant.turn.semantic import EndOfTurnModel
from voice_assistant.turn.taker import TurnListener, TurnTaker
from voice_assistant.turn.vad import SileroModel


class NoVoice(VoiceAssistantError):
    """A spoken session was asked for, and this server has no speech engine."""


@dataclass(frozen=True)
class TurnTaking:
    """How every stream is cut into turns."""

    vad: SileroModel
    settings: TurnSettings
    end_of_turn: EndOfTurnModel | None
    batcher: VadBatcher | None = None
    """Scores the frames of every stream of this process together; None: each frame as it comes."""

    def segmenter(self) -> TurnSegmenter:
        return TurnSegmenter.from_settings(self.vad.stream(), self.settings)

    def taker(self, listener: TurnListener) -> TurnTaker:
        """The model weighs in only where the settings ask for it (a session may ask for the silence rule)."""
        silero = self.vad.stream()
        return TurnTaker(
            TurnSegmenter.from_settings(silero, self.settings),
            listener,
            end_of_turn=self.end_of_turn if self.settings.end_of_turn == "smart-turn" else None,
            policy=EndOfTurnPolicy.from_settings(self.settings),
            scorer=self.batcher.stream(silero) if self.batcher is not None else None,
        )


@dataclass(frozen=True)
class Answering:
    """How every turn is answered: the model, what it hears, and the rules of a reply."""

    model: AudioLM
    policy: WindowPolicy
    synthesizer: Synthesizer | None
    reply_timeout_s: float
    speculative: bool
    transcripts: bool


class SessionPipeline:
    """The turn taker feeding the conversation of one session, for as long as one client is there."""

    def __init__(self, conversation: Conversation, turn_taking: TurnTaking) -> None:
        self.conversation = conversation
        self.turn_taking = turn_taking
        """How this session's audio is cut into turns (`retune` changes it)."""
        self._turns: TurnTaker | None = turn_taking.taker(conversation)

    async def retune(self, settings: TurnSettings | None) -> None:
        """Cut this session's turns by `settings` from now on; None: the client cuts them (`commit`).
        A turn being spoken is finished by the old rules first, as far as its audio goes."""
        if self._turns is not None:
            await self._turns.close()
        self.turn_taking = replace(self.turn_taking, settings=settings or self.turn_taking.settings)
        self._turns = self.turn_taking.taker(self.conversation) if settings is not None else None

    @property
    def session_id(self) -> str:
        return self.conversation.session_id

    def feed(self, samples: Samples, arrived: datetime) -> None:
        """16 kHz mono samples whose newest one arrived at `arrived` (ignored while the client cuts turns)."""
        if self._turns is not None:
            self._turns.feed(samples, arrived)

    async def say(self, text: str, label: str, *, until_played: bool = False) -> None:
        await self.conversation.say(text, label, until_played=until_played)

    async def settled(self) -> None:
        """Returns once no turn is being spoken, waiting or answered (see `Conversation.settled`)."""
        await self.conversation.settled()

    async def close(self) -> None:
        """Every finished turn stored, the reply in progress stopped and stored, no task left."""
        if self._turns is not None:
            await self._turns.close()
        await self.conversation.close()


class Pipelines:
    """The factory of session pipelines, for every transport; ready once the model is loaded."""

    def __init__(self, *, store: HistoryStore, held: HeldWrites, hub: EventHub, metrics: Metrics) -> None:
        self._store = store
        self._held = held
        self._hub = hub
        self._metrics = metrics
        self._turn_taking: TurnTaking | None = None
        self._answering: Answering | None = None

    def load(self, turn_taking: TurnTaking, answering: Answering) -> None:
        self._turn_taking, self._answering = turn_taking, answering

    @property
    def can_speak(self) -> bool:
        return self._answering is not None and self._answering.synthesizer is not None

    async def open(
        self,
        session_id: str,
        *,
        publish: Publish,
        sink: AudioSink | None = None,
        plain_barge_in: bool = False,
    ) -> SessionPipeline:
        """The pipeline of `session_id`; with a sink its replies are spoken too. `plain_barge_in`: any
        speech over a reply stops it at once (for clients that stop playback themselves at the first
        sign of speech, as Realtime clients do), instead of pausing it until the speech proves a turn."""
        if self._turn_taking is None or self._answering is None:
            raise RuntimeError("the model is not loaded yet")
        turn_taking, answering = self._turn_taking, self._answering
        hub = self._hub

        def fan_out(event: Event) -> None:
            publish(event)
            hub.publish(session_id, event)

        voice = None
        if sink is not None:
            if answering.synthesizer is None:
                raise NoVoice("this server has no speech engine (see VA_TTS)")
            voice = Voice(
                answering.synthesizer, sink, report=lambda message: fan_out(ErrorRaised(message=message))
            )
        # A reply in flight on an instance that died (the client came back here) reads as cut off.
        await self._store.mark_cut_off(
            before=utc_now() - timedelta(seconds=answering.reply_timeout_s), session_id=session_id
        )
        conversation = Conversation(
            session_id=session_id,
            next_index=await self._store.turn_count(session_id),
            store=self._store,
            held=self._held,
            model=answering.model,
            policy=answering.policy,
            publish=fan_out,
            metrics=self._metrics,
            reply_timeout_s=answering.reply_timeout_s,
            voice=voice,
            speculative=answering.speculative,
            transcripts=answering.transcripts,
            interruptions=None if plain_barge_in else Interruptions.from_settings(turn_taking.settings),
        )
        return SessionPipeline(conversation, turn_taking)
