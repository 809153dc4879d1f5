"""A local checkpoint, checked before anything loads it.

transformers answers a directory without a config.json (a build that stopped half way, a wrong path) with a
traceback about a missing `model_type` key, long after `serve` started; this says at once which directory
it is and what it lacks, and which package its family still needs.
"""

from __future__ import annotations

import json
from pathlib import Path

from voice_assistant.errors import ModelError
from voice_assistant.model.families import family_of

_PATH_PREFIXES = ("/", ".", "~")
"""How a local path begins where a hub id (`owner/name`) never does."""


def check_local_checkpoint(source: str) -> None:
    """ModelError when `source` names a local directory that holds no checkpoint of a known family with
    its packages installed, or a path that does not exist; a hub id passes (the hub answers for it)."""
    path = Path(source).expanduser()
    if not path.is_dir():
        if source.startswith(_PATH_PREFIXES):
            raise ModelError(f"the model directory {path} does not exist")
        return
    config = path / "config.json"
    if not config.is_file():
        raise ModelError(
            f"the model directory {path} holds no config.json: it is no checkpoint (or a half-built one)"
        )
    try:
        fields = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"{config} cannot be read as JSON: {exc}") from exc
    model_type = fields.get("model_type") if isinstance(fields, dict) else None
    if not isinstance(model_type, str) or not model_type:
        raise ModelError(f"{config} names no model_type: it is no transformers checkpoint")
    family_of(model_type).check_installed()
