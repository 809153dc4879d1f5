"""A byte-level BPE tokenizer trained offline with `tokenizers`, for tiny checkpoints."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

_CORPUS = """
Hello, how are you today? I am fine, thank you. What is the weather like this morning?
It is sunny and warm, with a light wind from the west. Can you tell me a short story?
Once upon a time there was a small robot who wanted to learn every language in the world.
The assistant listens to the user, thinks about the question and answers in a few words.
Please remind me to call my sister at five. Sure, I will remind you at five o'clock.
What did I ask you before? You asked about the weather and then about a story.
Numbers one two three four five six seven eight nine ten, and the days of the week.
"""


def train_byte_level_bpe(special_tokens: list[str], vocab_size: int = 600) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([line for line in _CORPUS.splitlines() if line] * 4, trainer)
    return tokenizer


CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Qwen2's text specials (pad, turn start, turn end), shared by the families built on a Qwen2 decoder."""


def qwen2_tokenizer(audio_specials: list[str], chat_template: str | None = None) -> Any:
    """A `Qwen2Tokenizer` over the small BPE with ChatML and the family's audio tokens as specials."""
    from transformers import Qwen2Tokenizer

    specials = CHATML_SPECIALS + audio_specials
    return Qwen2Tokenizer(
        tokenizer_object=train_byte_level_bpe(specials),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,  # type: ignore[arg-type]  # Qwen2 has no unknown token: byte-level BPE covers all
        bos_token=None,
        additional_special_tokens=specials[1:],
        chat_template=chat_template,
    )
