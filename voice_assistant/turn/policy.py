"""When a paused turn is over: Smart Turn's probability weighed against the silence so far.

One threshold on the end-of-turn model is either fast or safe, never both. On human speech Smart Turn
puts the end of a sentence inside a longer turn as high as the end of the turn, and the end of many
real turns (a phone reply, a single word) as low as a hesitation in the middle of a sentence. Only the
silence tells those apart, and the two kinds of pause last differently: between two sentences of one
turn people pause 0.1-0.4 s, inside a sentence up to 0.8 s. So a verdict does not end the turn by itself,
it sets how much silence ends it: a likely end (`sure` or more) after `quick_s`, doubt (`unsure` or
less) after `doubt_s`, and linearly in between. The model is asked at each of `judge_at_s` while the
silence lasts, and the latest verdict counts: the same words followed by more silence can sound
more finished, or less. `cap_s` ends any turn for which no verdict came (a hung model).

Pure arithmetic on seconds, so that it is tested on any timeline and swept offline by the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from voice_assistant.config import TurnSettings


@dataclass(frozen=True)
class EndOfTurnPolicy:
    quick_s: float
    """The silence that ends a turn the model calls over (`sure` or more)."""
    doubt_s: float
    """The silence that ends a turn the model doubts (`unsure` or less), or cannot judge (it failed)."""
    sure: float
    unsure: float
    cap_s: float
    """The silence that ends any turn, verdict or not."""
    likely: float
    """From this probability on the turn is likely over: a reply may start speculatively."""
    judge_at_s: Sequence[float]
    """The silences at which the model is asked, the first being the pause."""

    @classmethod
    def from_settings(cls, turns: TurnSettings) -> EndOfTurnPolicy:
        return cls(
            quick_s=turns.end_of_turn_quick_ms / 1000,
            doubt_s=turns.end_of_turn_doubt_ms / 1000,
            sure=turns.end_of_turn_sure,
            unsure=min(turns.end_of_turn_unsure, turns.end_of_turn_sure),
            cap_s=turns.max_silence_ms / 1000,
            likely=turns.speculate_from,
            judge_at_s=tuple(sorted(ms / 1000 for ms in turns.end_of_turn_judge_ms)),
        )

    def wait_s(self, probability: float | None) -> float:
        """The silence after which a turn with this verdict (None: the model failed) is over."""
        if probability is None or probability <= self.unsure:
            wait = self.doubt_s
        elif probability >= self.sure:
            wait = self.quick_s
        else:
            share = (probability - self.unsure) / (self.sure - self.unsure)
            wait = self.doubt_s + (self.quick_s - self.doubt_s) * share
        return min(wait, self.cap_s)

    def next_judgement(self, silence_s: float) -> float | None:
        """The next silence (after `silence_s`) at which to ask the model, if any before the cap."""
        later = [s for s in self.judge_at_s if silence_s < s < self.cap_s]
        return min(later) if later else None
