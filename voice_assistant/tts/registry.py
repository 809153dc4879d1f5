"""Which speech engine a deployment uses, by name; engines are imported only when chosen."""

from __future__ import annotations

from pathlib import Path

from voice_assistant.tts.base import SynthesisError, Synthesizer


def load_synthesizer(
    kind: str,
    *,
    voice: str | None = None,
    speed: float = 1.0,
    kokoro_model_path: Path | None = None,
    kokoro_voices_path: Path | None = None,
) -> Synthesizer | None:
    """Blocking (Kokoro loads its model): the engine named `kind`, or None for `none`.

    `voice` is the engine's own voice name (espeak-ng: `en-us`, `en-gb` ...; Kokoro: `af_heart`,
    `am_michael` ... or, packaged, `jm_kumo`); None takes the engine's default. Kokoro runs the model
    files when both paths are set, else the model that `voice-assistant[tts-kokoro]` installs.
    """
    match kind:
        case "none":
            return None
        case "espeak":
            from voice_assistant.tts.espeak import EspeakSynthesizer

            return EspeakSynthesizer.find(voice=voice or "en-us", speed=speed)
        case "kokoro":
            from voice_assistant.tts.kokoro import KokoroSynthesizer

            if kokoro_model_path is None and kokoro_voices_path is None:
                return KokoroSynthesizer.packaged(voice=voice or "jm_kumo", speed=speed)
            if kokoro_model_path is None or kokoro_voices_path is None:
                raise SynthesisError(
                    "Kokoro needs both files: set VA_KOKORO_MODEL_PATH and VA_KOKORO_VOICES_PATH"
                )
            return KokoroSynthesizer.load(
                kokoro_model_path, kokoro_voices_path, voice=voice or "af_heart", speed=speed
            )
        case _:
            raise SynthesisError(f"unknown speech engine {kind!r}: expected none, espeak or kokoro")
