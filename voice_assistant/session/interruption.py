"""False interruptions: speech over a spoken reply pauses it until the speech proves to be a turn.

A "mm-hmm", a cough or a door is not a turn, and cutting the reply for it (and storing it as
interrupted) is what users of a voice assistant hate most after being cut off themselves. So, as
LiveKit Agents does, speech over a spoken reply first only pauses it: the voice stops at once (the sink
takes back what it had not played) and the user turn is not announced yet. Then either

- the speech lasts `min_speech_s`: a real interruption, and the conversation goes on as with any
  barge-in (the reply is cut and stored with what was heard, the speech is the next turn); or
- it stays shorter (the turn that turn-taking finishes spans less), or the user stays silent for
  `timeout_s` without that happening: a false interruption, and the reply resumes where it stopped
  (the sentence that was cut plays again from its start).

Turn-taking reports a speech start `min_speech_ms` into the speech and every silence (`speech_silent`)
a pause into it (`VA_PAUSE_MS`, or where Smart Turn is first asked), so speech not silent
`proven_after_s` after its reported start has lasted `min_speech_s` for sure: that is when a long turn
proves real, without waiting for it to finish. That timer runs on the wall clock while the reports
come as the audio is scored, which a busy event loop (or a VAD batch) delays: `LAG_S` more keeps a late
report of a short word's silence from proving it real (a turn only a little longer than `min_speech_s`
then proves real when it finishes). Short silences count as speech, as in the finished turn's span: a
user silent when the timer runs out proves the turn by speaking on. The timeout counts from the last
silence, whether the end-of-turn model then doubts or not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from voice_assistant.config import TurnSettings
from voice_assistant.events import Publish, ReplyPaused, ReplyResumed
from voice_assistant.metrics import Metrics
from voice_assistant.session.reply import Reply
from voice_assistant.turn.batcher import Schedule, Timer
from voice_assistant.turn.detector import TurnParams
from voice_assistant.turn.taker import CompletedTurn
from voice_assistant.turn.vad import FRAME_SECONDS

LAG_S = 0.15
"""How much later than the audio the turn-taking reports may come, in the worst case we allow for: on
a shared 2-core machine generating a reply, a word of 0.42 s of speech had its silence reported more
than 0.05 s past the exact bound."""


@dataclass(frozen=True)
class Interruptions:
    """When speech over a spoken reply interrupts it (see the module's docstring)."""

    min_speech_s: float
    timeout_s: float
    proven_after_s: float
    """From the reported start of speech, with the user not silent then: it has lasted `min_speech_s`."""

    @classmethod
    def from_settings(cls, turns: TurnSettings) -> Interruptions | None:
        """None for `min_interruption_ms` 0: any speech over a reply interrupts it at once."""
        if turns.min_interruption_ms == 0:
            return None
        min_speech_s = turns.min_interruption_ms / 1000
        frames = TurnParams.from_settings(turns)  # when turn-taking reports speech, and silence
        exact_s = min_speech_s + (frames.pause_frames - frames.min_speech_frames) * FRAME_SECONDS
        return cls(
            min_speech_s=min_speech_s,
            timeout_s=turns.false_interruption_timeout_s,
            proven_after_s=max(exact_s, 0.0) + LAG_S,
        )


class Overlap:
    """The user speaks over one spoken reply: it is paused now, and stays so until `real` is called
    (the speech proved long enough) or the speech proves false (then the reply resumes).

    The conversation feeds it the turn-taking callbacks of that one user turn, up to `finished`. The
    speech counts from its start, short silences in it included, as the finished turn's span does: a
    user who is silent when that reaches `min_speech_s` proves it by speaking on (before the timeout)."""

    def __init__(
        self,
        reply: Reply,
        rules: Interruptions,
        *,
        schedule: Schedule,
        publish: Publish,
        metrics: Metrics,
        real: Callable[[], None],
        background: set[asyncio.Task[None]],
    ) -> None:
        """`real` is called once the speech proved a turn; `background` holds the task that plays the
        held speech again after a false interruption, until it is done (for the conversation's close)."""
        self._reply = reply
        self._rules = rules
        self._schedule = schedule
        self._publish = publish
        self._metrics = metrics
        self._real = real
        self._proof: Timer | None = None
        self._timeout: Timer | None = None
        self._silent = False
        self._long = False
        """The speech has gone on for `min_speech_s` (while the user is silent: speaking on proves it)."""
        self._paused = False
        self._background = background
        self._resuming: asyncio.Task[None] | None = None
        self._start()

    def speech_silent(self) -> None:
        """Silent for a moment: the timeout runs until the user speaks again."""
        self._silent = True
        self._cancel_timeout()
        self._timeout = self._schedule(self._rules.timeout_s, self._timed_out)

    def speech_resumed(self) -> None:
        """Speaking again: in the same speech, or, once the timeout resumed the reply, a new one."""
        self._silent = False
        self._cancel_timeout()
        if not self._paused:
            self._start()
        elif self._long:
            self._prove()

    def finished(self, turn: CompletedTurn) -> bool:
        """Turn-taking finished the user turn: True when it is a real one (the conversation then
        interrupts the reply and answers it); else the reply resumes, and the turn is dropped."""
        self.cancel()
        if (turn.speech_end - turn.speech_start).total_seconds() >= self._rules.min_speech_s:
            return True
        self._resume()
        return False

    def cancel(self) -> None:
        """The conversation closes, or the speech proved real: no timer left behind."""
        self._cancel_timeout()
        if self._proof is not None:
            self._proof.cancel()
            self._proof = None

    def _start(self) -> None:
        """Speech over the reply starts: pause it, and count the speech from here."""
        if not self._reply.done.done():
            if self._resuming is not None and not self._resuming.done():
                self._resuming.cancel()  # not replayed yet: the reply stays as the last pause left it
            else:
                self._reply.pause()
            self._paused = True
            self._publish(ReplyPaused(turn=self._reply.turn))
        self._long = False
        if self._proof is not None:
            self._proof.cancel()
        self._proof = self._schedule(self._rules.proven_after_s, self._lasted)

    def _lasted(self) -> None:
        self._proof = None
        self._long = True
        if not self._silent:
            self._prove()

    def _prove(self) -> None:
        self.cancel()
        self._real()

    def _timed_out(self) -> None:
        self._timeout = None
        self.cancel()
        self._resume()

    def _resume(self) -> None:
        if not self._paused:
            return
        self._paused = False
        if self._reply.done.done():  # cut meanwhile (its deadline, a failure): nothing to resume
            return
        self._metrics.false_interruptions.inc()
        self._resuming = asyncio.create_task(self._reply.resume(), name=f"resume-{self._reply.turn}")
        self._background.add(self._resuming)
        self._resuming.add_done_callback(self._background.discard)
        self._publish(ReplyResumed(turn=self._reply.turn))

    def _cancel_timeout(self) -> None:
        if self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None
