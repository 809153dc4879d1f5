"""The conversation engine of one connected session: commit each turn, answer it, store the answer.

Turns are answered one after another by a worker task. Each answer is a `Reply` (session/reply.py),
which owns the generation and the voice; new speech (barge-in), a vanished client or a shutdown
interrupts it through that one handle without touching the commit of any turn: a finished turn is
stored before any of its reply is sent, and the reply (complete, interrupted, failed or timed out) is
stored once, when it ends, with what was generated and what was heard. A reply may have started
speculatively at the pause that ended the turn; it is adopted then, or discarded without a trace when
the user speaks on. Speech over a spoken reply first only pauses it (session/interruption.py): the
user turn is announced, and the reply cut, once the speech proves a turn; a backchannel or noise
resumes the reply and is no turn at all (no `turn_started`, no index, nothing stored). A store call
that fails is an `error` event (see store_failures.py) and the session goes on. While the store is
unreachable, turns and replies are held (session/held_writes.py) and stored in order once it is back: such
a turn is answered from itself alone (the history cannot be read); a turn the store refused, or that
finds the held ones at their bound, gets no reply, and a reply that could not be stored still ends in its
`reply_done`.

A client may also take turns itself (the Realtime protocol's manual mode): `commit` a turn it cut, and
have it answered at once or only when it asks (`respond`), with instructions of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import datetime

from voice_assistant.audio.pcm import MODEL_RATE, Samples
from voice_assistant.clock import Clock, utc_now
from voice_assistant.errors import VoiceAssistantError
from voice_assistant.events import ErrorRaised, Publish, ReplyDone, TurnEnded, TurnStarted
from voice_assistant.history.database import unreachable
from voice_assistant.history.store import HistoryStore, NewTurn, ReplyOutcome
from voice_assistant.metrics import Metrics
from voice_assistant.model.base import AudioLM
from voice_assistant.redaction import session_tag
from voice_assistant.session.held_writes import HeldTurn, HeldWrites
from voice_assistant.session.interruption import Interruptions, Overlap
from voice_assistant.session.reply import Reply, ReplyEnd
from voice_assistant.session.speculation import Speculation
from voice_assistant.session.speech import Voice
from voice_assistant.session.store_failures import store_failure
from voice_assistant.session.summaries import Summarizer
from voice_assistant.session.transcripts import Transcriber
from voice_assistant.session.window import Window, WindowPolicy, build_window
from voice_assistant.turn.batcher import Schedule
from voice_assistant.turn.taker import CompletedTurn

logger = logging.getLogger(__name__)

DISCONNECTED = "client disconnected before the reply"
HELD_TURN = "the store cannot write now (unreachable, or its disk full), so the turn is held"
HELD_REPLY = "the store cannot write now (unreachable, or its disk full), so the reply is held"
HELD_FULL = "the store cannot write now, and this server holds all it can, so the turn is lost"
UNREAD_HISTORY = "the history cannot be read now, so the reply hears this turn alone"
"""Each `error` adds the store's error type; what is held is stored once the store is back."""


@dataclass(frozen=True)
class _Pending:
    turn: CompletedTurn
    speech_epoch: int
    """How many times speech had started when the turn ended; a later start means the user went on."""
    speculation: Speculation | None
    announced: int
    """The index its `turn_started` gave it (the store gives the index it commits under)."""
    answer: bool = True
    """Answer it once stored; else it waits for `respond()`."""


@dataclass(frozen=True)
class _Respond:
    """The client asked for a reply to the latest turn not answered yet."""

    instructions: str | None


class Conversation:
    """Listens to one stream's turn-taking (it is a `TurnListener`) and answers every finished turn."""

    def __init__(
        self,
        *,
        session_id: str,
        store: HistoryStore,
        held: HeldWrites,
        model: AudioLM,
        policy: WindowPolicy,
        publish: Publish,
        metrics: Metrics,
        next_index: int,
        reply_timeout_s: float,
        voice: Voice | None = None,
        speculative: bool = True,
        transcripts: bool = True,
        clock: Clock = utc_now,
        interruptions: Interruptions | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        """Without `interruptions`, any speech over a reply interrupts it at once (plain barge-in)."""
        self.session_id = session_id
        self._store = store
        self._held = held
        self._held_turns: dict[int, HeldTurn] = {}
        """This session's turns held for the store, by number, until their reply is handed over too."""
        self._model = model
        self._policy = policy
        self._publish = publish
        self._metrics = metrics
        self._clock = clock
        self._next_index = next_index
        self._reply_timeout_s = reply_timeout_s
        self._voice = voice
        self._speculative = speculative
        self._speech_epoch = 0
        self._queue: asyncio.Queue[_Pending | _Respond | None] = asyncio.Queue()
        self._busy = False
        self._speaking = False
        """A turn has started and not finished yet."""
        self._answered = asyncio.Event()
        """Set each time a turn's answer ends, for `settled()`."""
        self.reply: Reply | None = None
        """The reply in progress, if any: the one handle through which it is paused or stopped."""
        self._speculation: Speculation | None = None
        self._interruptions = interruptions
        self._schedule = schedule or asyncio.get_running_loop().call_later
        self._overlap: Overlap | None = None
        """The user turn being spoken over a spoken reply, until it proves real or false."""
        self._resuming: set[asyncio.Task[None]] = set()
        """Replies resuming after a false interruption (their held speech going back to the sink)."""
        self._closing = False
        self.auto_reply = True
        """Answer every finished turn; else a turn waits for `respond()`."""
        self.barge_in = True
        """Speech over a reply stops it; else the reply goes on and the new turn waits for it."""
        self.instructions: str | None = None
        """The system prompt of this session's replies, instead of the server's."""
        self.speak = True
        """Speak the replies (when the session has a voice); else they are text alone."""
        self._unanswered: tuple[int, CompletedTurn] | None = None
        """The latest stored turn that waits for `respond()`."""
        self._transcriber = (
            Transcriber(session_id=session_id, store=store, model=model, publish=publish, metrics=metrics)
            if transcripts
            else None
        )
        self._summarizer = (
            Summarizer(
                session_id=session_id, store=store, model=model, policy=policy, metrics=metrics, clock=clock
            )
            if policy.summary_every > 0
            else None
        )
        self._worker = asyncio.create_task(self._work(), name="conversation")

    # -- from turn-taking (TurnListener)

    def speech_started(self) -> None:
        """The user started speaking: over a spoken reply, pause it until the speech proves a turn;
        else a new turn, at once."""
        self._speaking = True
        self._end_overlap()
        reply = self.reply
        if self._interruptions is not None and reply is not None and reply.spoken and not self._closing:
            self._overlap = Overlap(
                reply,
                self._interruptions,
                schedule=self._schedule,
                publish=self._publish,
                metrics=self._metrics,
                real=self._interruption_proven,
                background=self._resuming,
            )
        else:
            self._begin_turn()

    def _interruption_proven(self) -> None:
        self._end_overlap()
        self._begin_turn()

    def _end_overlap(self) -> None:
        if self._overlap is not None:
            self._overlap.cancel()
            self._overlap = None

    def _begin_turn(self) -> None:
        """A new user turn: announce it and stop any reply in progress (barge-in)."""
        self._speech_epoch += 1
        self._pause_idle_work()
        if self.barge_in:
            self._interrupt()
        self._discard_speculation()
        self._publish(TurnStarted(turn=self._next_index))
        self._next_index += 1

    def speech_paused(self, audio: Samples) -> None:
        if self._overlap is not None:
            return  # the reply it speaks over is still in progress: nothing to speculate on yet
        if (
            self._speculative
            and self.auto_reply
            and not self._closing
            and not self._busy
            and self._queue.empty()
        ):
            self._discard_speculation()
            self._speculation = Speculation(self._model, lambda: self._window_for(audio))

    def speech_silent(self) -> None:
        if self._overlap is not None:
            self._overlap.speech_silent()

    def speech_resumed(self) -> None:
        if self._overlap is not None:
            self._overlap.speech_resumed()
        self._discard_speculation()

    def turn_finished(self, turn: CompletedTurn) -> None:
        overlap, self._overlap = self._overlap, None
        if overlap is not None and not overlap.finished(turn):
            # A backchannel or noise over the reply, which plays on: no turn of the conversation.
            self._speaking = False
            self._answered.set()
            return
        if overlap is not None:
            self._begin_turn()
        speculation, self._speculation = self._speculation, None
        self._speaking = False
        self._queue.put_nowait(
            _Pending(turn, self._speech_epoch, speculation, self._next_index - 1, answer=self.auto_reply)
        )

    # -- from a client that takes turns itself

    def commit(self, turn: CompletedTurn, *, answer: bool) -> None:
        """A turn the client cut: announced and stored like any other, answered now or on `respond()`.
        A reply in progress is not stopped: the turn waits for it."""
        self._publish(TurnStarted(turn=self._next_index))
        self._next_index += 1
        self._queue.put_nowait(_Pending(turn, self._speech_epoch, None, self._next_index - 1, answer=answer))

    def respond(self, instructions: str | None = None) -> None:
        """Answer the latest turn not answered yet (after what is queued), with `instructions` as the
        system prompt of this reply alone; an `error` event when there is none."""
        self._queue.put_nowait(_Respond(instructions))

    def cancel_reply(self) -> bool:
        """Stop the reply in progress (stored as interrupted, with what was said); False when none."""
        if self.reply is None:
            return False
        self._interrupt()
        return True

    async def say(self, text: str, label: str, *, until_played: bool = False) -> None:
        """Speak a fixed text that is no reply (a greeting); the user's speech silences it too."""
        if self._voice is not None:
            await self._voice.say(text, label, until_played=until_played)

    @property
    def quiet(self) -> bool:
        """Nothing in flight: no turn being spoken, waiting or answered (a spoken reply until it played)."""
        return not self._speaking and not self._busy and self._queue.empty()

    async def settled(self) -> None:
        """Returns at the next moment the conversation is quiet: where a drain can end it losing nothing."""
        while not self.quiet:
            self._answered.clear()
            await self._answered.wait()

    async def close(self) -> None:
        """The client is gone: cut the reply short, store every finished turn, leave no task behind."""
        self._closing = True
        self._discard_speculation()
        self._end_overlap()
        self._interrupt()
        self._queue.put_nowait(None)
        await asyncio.wait([self._worker, *self._resuming])
        self._speaking = False  # a turn cut off by the close will never finish: nothing is in flight
        self._answered.set()
        if self._voice is not None:
            await self._voice.close()
        for idle in self._idle_work():
            await idle.close()

    def _interrupt(self) -> None:
        if self.reply is not None:
            self.reply.interrupt()
        if self._voice is not None:
            self._voice.silence()

    def _discard_speculation(self) -> None:
        if self._speculation is not None:
            self._speculation.cancel()
            self._metrics.speculations.labels("discarded").inc()
            self._speculation = None

    # -- the worker

    async def _work(self) -> None:
        while (pending := await self._queue.get()) is not None:
            self._busy = True
            try:
                if isinstance(pending, _Respond):
                    await self._respond(pending)
                else:
                    await self._answer(pending)
            except Exception as exc:  # a bug: this turn fails, the session goes on
                logger.exception("turn failed", extra={"session": session_tag(self.session_id)})
                self._report(f"the turn failed: {type(exc).__name__}", stage="turn")
            finally:
                self._busy = False
                self._answered.set()
            self._model_free()

    def _idle_work(self) -> list[Transcriber | Summarizer]:
        """What uses the model while no reply needs it: transcripts, then the running summary."""
        return [work for work in (self._transcriber, self._summarizer) if work is not None]

    def _model_free(self) -> None:
        """No reply needs the model now: let the idle work have it until the user speaks again."""
        if self._queue.empty() and not self._closing:
            for idle in self._idle_work():
                idle.resume()

    def _pause_idle_work(self) -> None:
        for idle in self._idle_work():
            idle.pause()

    def _report(self, message: str, *, stage: str, turn: int | None = None) -> None:
        self._metrics.errors.labels(stage).inc()
        self._publish(ErrorRaised(message=message, turn=turn))

    def _window_policy(self, instructions: str | None) -> WindowPolicy:
        prompt = instructions or self.instructions
        return self._policy if prompt is None else replace(self._policy, system_prompt=prompt)

    async def _window_for(
        self, current: Samples | str, instructions: str | None = None, *, before: int | None = None
    ) -> Window:
        """The window of a new turn, or of the stored turn `before` (the turns before it)."""
        summary = await self._store.latest_summary(self.session_id)
        past = await self._store.recent_turns(
            self.session_id,
            limit=max(self._policy.max_turns - (1 if before is None else 0), 0),
            audio_for_last=max(self._policy.audio_turns - (1 if before is None else 0), 0),
            after=summary.through_turn if summary is not None else -1,
        )
        if before is not None:
            past = [turn for turn in past if turn.index < before]
        return build_window(self._window_policy(instructions), past, current, summary)

    async def _commit(self, pending: _Pending) -> tuple[int, Window, Speculation | None, bool] | None:
        """Read the turn's window and store the turn: its index, its window, the speculation still usable
        and whether the turn is only held (the store unreachable); None when the store refused it or it
        could not be held (reported, and the speculation stopped)."""
        turn, speculation = pending.turn, pending.speculation
        current = turn.audio if turn.text is None else turn.text
        window: Window | None = None
        new_turn = NewTurn(
            audio=turn.audio,
            speech_start=turn.speech_start,
            speech_end=turn.speech_end,
            turn_ended_at=turn.decided_at,
            transcript=turn.text,
        )
        try:
            if self._held.holding(self.session_id):
                raise _HoldBehind()
            if speculation is not None:
                try:
                    window = await speculation.window
                except asyncio.CancelledError:  # discarded, or it could not read the window
                    speculation = None
            if window is None:
                window = await self._window_for(current)
            index = await self._store.add_turn(
                self.session_id, self._with_context(new_turn, window, str(turn.reason), speculation)
            )
        except Exception as exc:
            if isinstance(exc, _HoldBehind) or unreachable(exc):
                if window is None:  # the history could not be read: the reply hears this turn alone
                    if speculation is not None:
                        speculation.cancel()  # begun on a window it could not read, or never read
                        speculation = None
                    window = build_window(self._window_policy(None), [], current)
                if self._hold(
                    pending, self._with_context(new_turn, window, str(turn.reason), speculation), exc
                ):
                    return pending.announced, window, speculation, True
            if speculation is not None:
                speculation.cancel()
            # Not stored, so the store gives its index to the next turn: announce that one under it too.
            self._next_index -= 1
            if isinstance(exc, VoiceAssistantError):  # the session was deleted meanwhile
                self._report(str(exc), stage="turn", turn=pending.announced)
            elif not unreachable(exc) and not isinstance(exc, _HoldBehind):
                self._publish(self._store_failure("the turn could not be stored", exc, pending.announced))
            return None
        return index, window, speculation, False

    @staticmethod
    def _with_context(turn: NewTurn, window: Window, end: str, speculation: Speculation | None) -> NewTurn:
        """The turn as stored: with what its reply heard, how it ended, whether it was speculated."""
        return replace(turn, context={**window.context, "end": end, "speculative": speculation is not None})

    def _hold(self, pending: _Pending, turn: NewTurn, error: Exception) -> bool:
        """Hold the turn for the store, and say so: whether it is held (else it is lost, and said so)."""
        held = self._held.hold_turn(self.session_id, turn)
        if held is None:
            logger.error("a turn is lost: the writes held for the store are at VA_STORE_HOLD_SECONDS")
            self._report(HELD_FULL, stage="store", turn=pending.announced)
            return False
        self._held_turns[pending.announced] = held
        if not isinstance(error, _HoldBehind):
            self._publish(self._store_failure(HELD_TURN, error, pending.announced))
        return True

    def _store_failure(self, what: str, error: Exception, turn: int) -> ErrorRaised:
        return store_failure(what, error, metrics=self._metrics, session_id=self.session_id, turn=turn)

    async def _answer(self, pending: _Pending) -> None:
        committed = await self._commit(pending)
        if committed is None:
            return
        turn, (index, window, speculation, held) = pending.turn, committed
        committed_at = self._clock()
        if self._transcriber is not None and turn.text is None and not held:
            self._transcriber.add(index, turn.audio)
        self._metrics.turns.labels(str(turn.reason)).inc()
        self._metrics.endpointing.observe(max((committed_at - turn.speech_end).total_seconds(), 0.0))
        seconds = round(len(turn.audio) / MODEL_RATE, 3)
        self._publish(TurnEnded(turn=index, audio_seconds=seconds, held=True if held else None))
        if not pending.answer:
            if speculation is not None:
                speculation.cancel()
            self._unanswered = (index, turn)
            return
        if self._closing or pending.speech_epoch != self._speech_epoch:
            # Nobody is listening any more, or the user went on speaking before the reply began.
            if speculation is not None:
                speculation.cancel()
            end = ReplyEnd(
                text="",
                heard=None,
                interrupted=True,
                error=DISCONNECTED if self._closing else None,
                first_delta_at=None,
                ended_at=self._clock(),
            )
            await self._finish(index, turn, committed_at, end)
            return
        await self._reply_to(index, turn, committed_at, window, speculation)

    async def _respond(self, request: _Respond) -> None:
        if self._closing:
            return
        if self._unanswered is None:
            self._report("there is no turn to respond to: commit one first", stage="turn")
            return
        (index, turn), self._unanswered = self._unanswered, None
        self._pause_idle_work()
        current = turn.audio if turn.text is None else turn.text
        try:
            window = await self._window_for(current, request.instructions, before=index)
        except Exception as exc:
            if not unreachable(exc):
                self._publish(self._store_failure("the history could not be read", exc, index))
                return
            # The store is away: the reply hears the turn alone, as a held turn's does.
            window = build_window(self._window_policy(request.instructions), [], current)
            self._publish(self._store_failure(UNREAD_HISTORY, exc, index))
        await self._reply_to(index, turn, self._clock(), window, None)

    async def _reply_to(
        self,
        index: int,
        turn: CompletedTurn,
        committed_at: datetime,
        window: Window,
        speculation: Speculation | None,
    ) -> None:
        """Answer the stored turn `index` from `window` (or the speculation begun for it), store the reply."""
        if speculation is not None:
            self._metrics.speculations.labels("adopted").inc()
            source = speculation.stream()
        else:
            source = self._model.stream_reply(window.messages)
        self.reply = reply = Reply(
            turn=index,
            source=source,
            publish=self._publish,
            utterance=self._voice.utterance(f"turn-{index}")
            if self._voice is not None and self.speak
            else None,
            clock=self._clock,
            timeout_s=self._reply_timeout_s,
        )
        try:
            # A spoken reply may play for seconds after the model is done with it: transcribe meanwhile.
            await reply.generated.wait()
            self._model_free()
            end = await reply.done
        finally:
            self.reply = None
            if speculation is not None:
                speculation.cancel()  # a reply stopped before it began never read (nor closed) it
        if end.first_delta_at is not None:
            self._metrics.first_delta.observe(
                max((end.first_delta_at - turn.speech_end).total_seconds(), 0.0)
            )
        if end.interrupted:
            self._metrics.interrupted.inc()
        if end.error is not None:
            self._report(end.error, stage="model", turn=index)
        await self._finish(index, turn, committed_at, end)

    async def _finish(self, index: int, turn: CompletedTurn, committed_at: datetime, end: ReplyEnd) -> None:
        """The one write of a reply's outcome, then its `reply_done`."""

        def since_speech_end(moment: datetime | None) -> float | None:
            return None if moment is None else round((moment - turn.speech_end).total_seconds(), 4)

        timings = {
            name: value
            for name, value in {
                "end_of_turn": since_speech_end(turn.decided_at),
                "turn_ended": since_speech_end(committed_at),
                "first_delta": since_speech_end(end.first_delta_at),
                "reply_done": since_speech_end(end.ended_at),
            }.items()
            if value is not None
        }
        outcome = ReplyOutcome(
            text=end.text,
            heard=end.heard,
            interrupted=end.interrupted,
            error=end.error,
            first_delta_at=end.first_delta_at,
            reply_done_at=end.ended_at,
            timings=timings,
        )
        # Shielded: a second cancellation (shutdown) must not lose what was already said.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._store_reply(index, outcome))
        self._publish(
            ReplyDone(
                turn=index, text=end.text, heard=end.heard, interrupted=end.interrupted, timings=timings
            )
        )
        if self._transcriber is not None:
            self._transcriber.replied(index)
        if self._summarizer is not None:
            self._summarizer.replied(index)

    async def _store_reply(self, index: int, outcome: ReplyOutcome) -> None:
        """The reply's one write (held with its turn, or held alone while the store is unreachable); when
        it fails, the client still gets its `reply_done`, after the error."""
        try:
            if (held := self._held_turns.pop(index, None)) is not None:
                await self._held.finish_reply(held, outcome)
            elif (unreached := await self._held.write_reply(self.session_id, index, outcome)) is not None:
                self._publish(self._store_failure(HELD_REPLY, unreached, index))
        except Exception as exc:
            self._publish(self._store_failure("the reply could not be stored", exc, index))


class _HoldBehind(Exception):
    """The session has writes held: its new turn waits behind them, in order, untried."""
