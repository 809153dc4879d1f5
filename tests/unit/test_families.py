"""The family table: prompt cost of audio and actionable errors for what is missing."""

from __future__ import annotations

from dataclasses import replace

import pytest

from voice_assistant.errors import ModelError
from voice_assistant.model.families import FAMILIES, family_of

pytestmark = pytest.mark.unit


def test_audio_cost_follows_each_family_s_encoder() -> None:
    qwen, voxtral = FAMILIES["qwen2_audio"], FAMILIES["voxtral"]
    assert qwen.audio_tokens(2.0) == 50 + 8
    assert qwen.audio_tokens(45.0) == qwen.audio_tokens(30.0)  # trimmed to the encoder's window
    # Voxtral pads every clip to a multiple of 30 s (375 tokens).
    assert voxtral.audio_tokens(2.0) == 375 + 8
    assert voxtral.audio_tokens(31.0) == 750 + 8


def test_an_unknown_family_is_refused_with_the_supported_list() -> None:
    with pytest.raises(ModelError, match="supported: qwen2_audio, voxtral"):
        family_of("llama")


def test_a_missing_package_names_the_extra_to_install() -> None:
    family = replace(FAMILIES["voxtral"], modules=("no_such_module_here",))
    with pytest.raises(ModelError, match=r"pip install 'voice-assistant\[voxtral\]'"):
        family.check_installed()
    FAMILIES["qwen2_audio"].check_installed()


def test_the_models_command_lists_every_family_and_how_it_was_tested(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from voice_assistant.cli import main

    main(["models"])
    listing = capsys.readouterr().out
    for model_type in FAMILIES:
        assert f"{model_type}: " in listing
    assert "tested on a tiny checkpoint (make-tiny-model --family qwen2_audio)" in listing
    assert listing.count("tested on a tiny checkpoint") == len(FAMILIES)  # every family, none untested
    assert "(make-tiny-model --family granite_speech) beside torch 2.11.0" in listing
    assert "licence Apache-2.0; 8.4B parameters" in listing
