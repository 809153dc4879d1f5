"""Small random checkpoints of real architectures, built offline and loaded through `from_pretrained`.

Weights are random (replies are gibberish) but the config, tokenizer with the family's special
tokens and chat template, and feature extractor are the real classes, so every code path that a
hub checkpoint takes is taken. One module per family, named by its transformers `model_type`,
with a `build(directory, seed)` function.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
import secrets
import shutil
from pathlib import Path

from voice_assistant.errors import ModelError
from voice_assistant.model.families import family_of


def families() -> list[str]:
    """The families that have a tiny builder (a module in this package)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_tiny_model(directory: Path, family: str = "qwen2_audio", *, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `family` (a transformers model_type) at `directory`, which must
    not exist yet or be empty: a checkpoint there is never overwritten file by file. The family's packages
    are checked first, and it is built in a folder beside `directory`, renamed into place once complete,
    so a build that fails or is interrupted leaves nothing at `directory` that `serve --model` would
    take for a checkpoint."""
    if family not in families():
        raise ModelError(f"no tiny builder for {family!r}; available: {', '.join(families())}")
    family_of(family).check_installed()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(f"{directory} already exists and is not empty: remove it or name a new one")
    directory.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own (several workers may build at once), made as `mkdir` makes a directory: with the
    # umask's permissions, not a temporary directory's owner-only ones, since it becomes the checkpoint.
    staging = directory.parent / f".{directory.name}.{secrets.token_hex(6)}.partial"
    staging.mkdir()
    try:
        importlib.import_module(f"{__name__}.{family}").build(staging, seed)
        staging.rename(directory)  # one step; onto an empty directory too, never onto a full one
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def cached_tiny_model(cache_dir: Path, family: str) -> Path:
    """The tiny checkpoint of `family` under `cache_dir`, built on first use. Several workers may start at
    once: each builds in a folder of its own, the first rename wins and the others' stay out."""
    directory = cache_dir / "tiny-models" / family
    if (directory / "config.json").exists():
        return directory
    if directory.exists():  # no checkpoint (a rename is whole): a half build of an older version
        shutil.rmtree(directory, ignore_errors=True)
    with contextlib.suppress(OSError):  # another process's rename came first
        build_tiny_model(directory, family)
    return directory
