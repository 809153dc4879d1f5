"""What the CLI says before it builds or serves a model: a family's missing package (blocked in
`sys.modules`, as an uninstalled one is refused), a directory that holds no checkpoint, a target that is
not free; and that a tiny build that fails half way leaves nothing where the checkpoint would be.

The builds here are the real builder with one family's `build` replaced (no weights are made): what is
tested is where the files land, not what they hold."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from voice_assistant import cli
from voice_assistant.model.tiny import build_tiny_model, qwen2_audio
from voice_assistant.workers import supervisor

pytestmark = pytest.mark.unit


def refusal(argv: list[str]) -> str:
    """The one line `voice-assistant` exits with."""
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    message = str(exited.value.code)
    assert "\n" not in message
    return message


@pytest.fixture
def half_built(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """qwen2_audio's build writes its config, then stops as if interrupted (Ctrl-C); where it wrote."""
    written: list[Path] = []

    def interrupted(directory: Path, seed: int) -> None:
        (directory / "config.json").write_text('{"model_type": "qwen2_audio"}')
        written.append(directory)
        raise KeyboardInterrupt

    monkeypatch.setattr(qwen2_audio, "build", interrupted)
    return written


@pytest.fixture
def quick_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """qwen2_audio's build writes its config and nothing else."""

    def config_only(directory: Path, seed: int) -> None:
        (directory / "config.json").write_text('{"model_type": "qwen2_audio"}')

    monkeypatch.setattr(qwen2_audio, "build", config_only)


@pytest.fixture
def serving_is_not_reached(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` fails here rather than serve, should its checks let a bad model through."""

    def reached(_settings: object) -> int:
        raise AssertionError("serve went past its model checks")

    monkeypatch.setattr(supervisor, "worker_count", reached)


def test_a_family_without_its_extra_is_refused_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mistral_common", None)
    target = tmp_path / "voxtral"

    message = refusal(["make-tiny-model", str(target), "--family", "voxtral"])

    assert "mistral_common" in message
    assert "pip install 'voice-assistant[voxtral]'" in message
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_build_leaves_no_target_and_no_staging(tmp_path: Path, half_built: list[Path]) -> None:
    target = tmp_path / "models" / "tiny"
    with pytest.raises(KeyboardInterrupt):
        build_tiny_model(target)
    assert half_built and half_built[0].parent == target.parent  # it was built beside the target
    assert list(target.parent.iterdir()) == []


def test_a_build_lands_whole_in_a_new_or_empty_directory_and_never_over_a_full_one(
    tmp_path: Path, quick_build: None
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert build_tiny_model(empty) == empty
    assert [p.name for p in empty.iterdir()] == ["config.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no staging folder left beside it
    made = tmp_path / "made-by-mkdir"
    made.mkdir()
    assert stat.S_IMODE(empty.stat().st_mode) == stat.S_IMODE(made.stat().st_mode)  # the umask's, not 0700

    message = refusal(["make-tiny-model", str(empty)])
    assert f"{empty} already exists and is not empty" in message


def test_an_unknown_family_is_refused_with_the_buildable_ones(tmp_path: Path) -> None:
    message = refusal(["make-tiny-model", str(tmp_path / "x"), "--family", "llama"])
    assert "no tiny builder for 'llama'; available: audioflamingo3, granite_speech" in message


def test_serving_a_directory_without_config_json_says_which_and_what_it_lacks(
    tmp_path: Path, serving_is_not_reached: None
) -> None:
    (tmp_path / "tekken.json").write_text("{}")  # what a Voxtral build that stopped early leaves
    message = refusal(["serve", "--model", str(tmp_path), "--data-dir", str(tmp_path)])
    assert message == (
        f"voice-assistant serve: the model directory {tmp_path} holds no config.json: it is no checkpoint"
        " (or a half-built one)"
    )


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"architectures": ["LlamaForCausalLM"]}, "names no model_type"),
        ("not json", "cannot be read as JSON"),
        ({"model_type": "llama"}, "unsupported model family 'llama'"),
    ],
)
def test_serving_a_config_without_a_known_model_type_is_refused(
    tmp_path: Path, serving_is_not_reached: None, config: object, expected: str
) -> None:
    (tmp_path / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    assert expected in refusal(["serve", "--model", str(tmp_path), "--data-dir", str(tmp_path)])


def test_serving_a_checkpoint_whose_family_lacks_its_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serving_is_not_reached: None
) -> None:
    monkeypatch.setitem(sys.modules, "mistral_common", None)
    (tmp_path / "config.json").write_text('{"model_type": "voxtral"}')
    message = refusal(["serve", "--model", str(tmp_path), "--data-dir", str(tmp_path)])
    assert "pip install 'voice-assistant[voxtral]'" in message


def test_serving_a_path_that_does_not_exist_is_refused_and_a_hub_id_is_left_to_the_hub(
    tmp_path: Path, serving_is_not_reached: None
) -> None:
    missing = tmp_path / "nowhere"
    message = refusal(["serve", "--model", str(missing), "--data-dir", str(tmp_path)])
    assert message.endswith(f"the model directory {missing} does not exist")
    with pytest.raises(AssertionError, match="past its model checks"):
        cli.main(["serve", "--model", "Qwen/Qwen2-Audio-7B-Instruct", "--data-dir", str(tmp_path)])
