"""American English text -> the phonemes Kokoro v1.0 reads, through espeak-ng's IPA.

Kokoro v1.0 was trained on misaki's phoneme set: IPA with one letter per diphthong and affricate
(`aɪ` -> `I`, `tʃ` -> `ʧ`), American r-colouring spelled out, no length marks. The table below is
misaki's own espeak-ng fallback mapping for en-us (Apache-2.0). Raw espeak IPA is understandable too,
but pocketsphinx transcribes the mapped phonemes word for word where it misses words of the raw ones.

espeak-ng drops punctuation from its IPA, yet Kokoro reads it as prosody (it pauses 0.2-0.3 s at a
comma), so each clause is phonemized on its own and its punctuation put back.
"""

from __future__ import annotations

import re

from voice_assistant.tts.espeak_cli import run_espeak

TIE = "^"
"""espeak-ng joins the letters of one phoneme with this (`a^ɪ`), so diphthongs map unambiguously."""

_ESPEAK_TO_KOKORO = sorted(
    {
        "ʔˌn\u0329": "tn",
        "ʔn\u0329": "tn",
        "ʔn": "tn",
        "ʔ": "t",
        "a^ɪ": "I",
        "a^ʊ": "W",
        "d^ʒ": "ʤ",
        "e^ɪ": "A",
        "e": "A",
        "t^ʃ": "ʧ",
        "ɔ^ɪ": "Y",
        "ə^l": "ᵊl",
        "ʲ": "",
        "ɚ": "əɹ",
        "r": "ɹ",
        "x": "k",
        "ç": "k",
        "ɐ": "ə",
        "ɬ": "l",
        "\u0303": "",
        "o^ʊ": "O",
        "ɜːɹ": "ɜɹ",
        "ɜː": "ɜɹ",
        "ɪə": "iə",
        "ː": "",
    }.items(),
    key=lambda pair: -len(pair[0]),
)

_CLAUSE_END = re.compile(r"(?<=[,;:.!?…])\s+")
"""Punctuation followed by a space ends a clause ("3.5" does not)."""

_PUNCTUATION = re.compile(r"^(.*?)([,;:.!?…]*)$", re.DOTALL)


def to_kokoro(ipa: str) -> str:
    """espeak-ng IPA (with `TIE`) -> Kokoro's phoneme set."""
    for old, new in _ESPEAK_TO_KOKORO:
        ipa = ipa.replace(old, new)
    ipa = re.sub(r"(\S)\u0329", r"ᵊ\1", ipa)  # syllabic consonant: a schwa before it
    # espeak-ng < 1.52 writes `o` for the THOUGHT vowel; espeak's linking r doubles an r-coloured one.
    return ipa.replace(TIE, "").replace("o", "ɔ").replace("ɹɹ", "ɹ")


class EspeakPhonemizer:
    """Blocking (run it in a thread): English text -> Kokoro phonemes, clause by clause."""

    def __init__(self, *, executable: str) -> None:
        self._executable = executable
        self._options = ["-q", "--ipa", f"--tie={TIE}", "-v", "en-us"]

    def __call__(self, text: str) -> str:
        phrases = []
        for clause in _CLAUSE_END.split(text.strip()):
            match = _PUNCTUATION.match(clause)
            assert match is not None  # the pattern matches any string
            words, punctuation = match.groups()
            ipa = run_espeak(self._executable, self._options, words).decode()
            phrases.append(to_kokoro(" ".join(ipa.split())) + punctuation)
        return " ".join(phrase for phrase in phrases if phrase)
