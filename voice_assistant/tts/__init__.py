"""Speech out: a reply's text deltas -> audio, sentence by sentence, from a swappable engine."""

from voice_assistant.tts.base import SynthesisError, Synthesizer
from voice_assistant.tts.registry import load_synthesizer
from voice_assistant.tts.sentences import SentenceSplitter, SpeechChunk, sentences, speak_sentences

__all__ = [
    "SentenceSplitter",
    "SpeechChunk",
    "SynthesisError",
    "Synthesizer",
    "load_synthesizer",
    "sentences",
    "speak_sentences",
]
