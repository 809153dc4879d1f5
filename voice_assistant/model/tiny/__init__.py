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
import shutil
import tempfile
from pathlib import Path


def families() -> list[str]:
    """The families that have a tiny builder (a module in this package)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def build_tiny_model(directory: Path, family: str = "qwen2_audio", *, seed: int = 0) -> Path:
    """Write a tiny random checkpoint of `family` (a transformers model_type) into `directory`."""
    if family not in families():
        raise ValueError(f"no tiny builder for {family!r}; available: {', '.join(families())}")
    directory.mkdir(parents=True, exist_ok=True)
    importlib.import_module(f"{__name__}.{family}").build(directory, seed)
    return directory


def cached_tiny_model(cache_dir: Path, family: str) -> Path:
    """The tiny checkpoint of `family` under `cache_dir`, built on first use."""
    directory = cache_dir / "tiny-models" / family
    if not (directory / "config.json").exists():
        # Build beside it and rename, so an interrupted build never leaves a half checkpoint in place, and
        # in a folder of its own, since several workers may start at once: the first rename wins.
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{family}.", dir=directory.parent))
        try:
            build_tiny_model(staging, family)
            if not (directory / "config.json").exists():
                shutil.rmtree(directory, ignore_errors=True)  # a half build of an older version
                with contextlib.suppress(OSError):  # another process's rename came first
                    staging.rename(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return directory
