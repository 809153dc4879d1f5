"""When a paused turn is over: Smart Turn's probability weighed against the silence so far.

One threshold on the end-of-turn model is either fast or safe, never both: on human speech Smart Turn
puts many pauses inside a turn (between two sentences of one request, a hesitation) as high as the
ends of turns, and some ends of turns (a trailing "..." intonation) low. So the verdict sets how much
silence ends the turn instead of ending it outright: a sure verdict ends it after `quick_s`, doubt
waits longer, up to `cap_s`, which always ends it. The model is asked again as the silence grows
(`rejudge_after_s`): the same words followed by more silence sound more finished, and a verdict
that was wrong at the first moment of a pause is corrected before the cap.

Pure arithmetic on seconds, so that it is tested on any timeline and swept offline by the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voice_assistant.config import TurnSettings


@dataclass(frozen=True)
class EndOfTurnPolicy:
    quick_s: float
    """The silence that ends a turn the model is sure of (probability 1)."""
    cap_s: float
    """The silence that ends any turn, whatever the model says (or when it fails)."""
    patience: float
    """How long doubt waits: the wait grows with (1 - probability) ** (1 / patience)."""
    likely: float
    """From this probability on the turn is likely over: a reply may start speculatively."""
    rejudge_after_s: Sequence[float]
    """Silences, after the first verdict at the pause, at which the model is asked again."""

    @classmethod
    def from_settings(cls, turns: TurnSettings) -> EndOfTurnPolicy:
        return cls(
            quick_s=turns.end_of_turn_quick_ms / 1000,
            cap_s=turns.max_silence_ms / 1000,
            patience=turns.end_of_turn_patience,
            likely=turns.speculate_from,
            rejudge_after_s=tuple(ms / 1000 for ms in turns.end_of_turn_rejudge_ms),
        )

    def wait_s(self, probability: float) -> float:
        """The silence after which a turn with this verdict is over."""
        doubt = min(max(1.0 - probability, 0.0), 1.0)
        return self.quick_s + (self.cap_s - self.quick_s) * float(doubt ** (1.0 / self.patience))

    def next_judgement(self, silence_s: float) -> float | None:
        """The next silence (after `silence_s`) at which to ask the model again, if any before the cap."""
        later = [s for s in self.rejudge_after_s if silence_s < s < self.cap_s]
        return min(later) if later else None
