"""What every tiny builder shares: decoder sizes, a seeded model, generation ids, saving.

A tiny checkpoint is only useful if it is saved exactly as a hub checkpoint is (config, weights,
generation config, processor), so that `from_pretrained` takes the same path for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEXT_DIMS: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "max_position_embeddings": 32768,
}
"""A decoder small enough to build and run in a second on a CPU, with a real-sized position table."""


def seeded(model_class: Any, config: Any, seed: int) -> Any:
    """The model with weights drawn from `seed`, so one seed always gives one checkpoint."""
    import torch

    torch.manual_seed(seed)
    return model_class(config)


def save(
    directory: Path,
    model: Any,
    processor: Any,
    *,
    eos: int | list[int],
    pad: int | None,
    bos: int | None = None,
) -> None:
    """Write the checkpoint with the family's stop tokens in its generation config, as the hub's carry."""
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    if bos is not None:
        model.generation_config.bos_token_id = bos
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
