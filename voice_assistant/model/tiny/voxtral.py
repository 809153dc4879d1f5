"""Tiny Voxtral: Whisper-style audio encoder + Llama decoder, tokenized by mistral-common's Tekken.

Voxtral has no Jinja chat template and no `tokenizer.json`: its tokenizer is a `tekken.json` read by
mistral-common (through transformers' `MistralCommonBackend`), which also turns each audio clip into
`[BEGIN_AUDIO]` plus 12.5 `[AUDIO]` tokens per second, padded to 30 s chunks. The file is written here
with the real layout (byte-level BPE ranks, special tokens at Voxtral's ranks, an `audio` section).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from voice_assistant.model.tiny._common import save, seeded
from voice_assistant.model.tiny._tokenizer import train_byte_level_bpe

# Tekken's pre-tokenizer regex, as in mistral-common's shipped tekken files.
_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_NUM_SPECIAL_TOKENS = 40
"""Voxtral reserves 1000 ranks; 40 is enough to hold the ones it uses at their real ranks."""
_AUDIO_SPECIALS = {24: "[AUDIO]", 25: "[BEGIN_AUDIO]", 34: "[TRANSCRIBE]"}
"""Real ranks: `VoxtralProcessor` hard-codes the audio token id 24."""
_AUDIO = {
    "sampling_rate": 16_000,
    "frame_rate": 12.5,
    "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
    "chunk_length_s": 30.0,
}


def _special_tokens() -> list[dict[str, Any]]:
    """Control tokens 0-19 as mistral-common defines them, audio ones at Voxtral's ranks, fillers between."""
    from mistral_common.tokens.tokenizers.tekken import Tekkenizer

    named = {t["rank"]: t["token_str"] for t in Tekkenizer.DEPRECATED_SPECIAL_TOKENS} | _AUDIO_SPECIALS
    filler = Tekkenizer.SPECIAL_TOKEN_TEMPLATE
    return [
        {"rank": rank, "token_str": named.get(rank, filler.format(id=rank)), "is_control": True}
        for rank in range(_NUM_SPECIAL_TOKENS)
    ]


def _vocab() -> list[dict[str, Any]]:
    """tiktoken ranks: the 256 bytes, then each merge of the small BPE in the order it was learned."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
    merges = json.loads(train_byte_level_bpe([]).to_str())["model"]["merges"]
    merged = [bytes(to_byte[char] for char in left + right) for left, right in merges]
    pieces = [bytes([byte]) for byte in range(256)] + merged
    return [
        {
            "rank": rank,
            "token_bytes": base64.b64encode(piece).decode("ascii"),
            "token_str": _token_str(piece),
        }
        for rank, piece in enumerate(pieces)
    ]


def _token_str(piece: bytes) -> str | None:
    """The token as text; None where it splits a UTF-8 character, as in Mistral's own files."""
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _write_tekken(path: Path) -> int:
    """Write a `tekken.json` (tokenizer version v7, Voxtral's) and return its vocabulary size."""
    vocab = _vocab()
    vocab_size = _NUM_SPECIAL_TOKENS + len(vocab)
    tekken = {
        "config": {
            "pattern": _PATTERN,
            "num_vocab_tokens": len(vocab),
            "default_vocab_size": vocab_size,
            "default_num_special_tokens": _NUM_SPECIAL_TOKENS,
            "version": "v7",
        },
        "vocab": vocab,
        "special_tokens": _special_tokens(),
        "audio": _AUDIO,
    }
    path.write_text(json.dumps(tekken), encoding="utf-8")
    return vocab_size


def build(directory: Path, seed: int) -> None:
    from transformers import (
        VoxtralConfig,
        VoxtralForConditionalGeneration,
        VoxtralProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.tokenization_mistral_common import MistralCommonBackend

    vocab_size = _write_tekken(directory / "tekken.json")
    tokenizer = MistralCommonBackend(tokenizer_path=directory / "tekken.json")
    extractor = WhisperFeatureExtractor(feature_size=128)
    processor = VoxtralProcessor(feature_extractor=extractor, tokenizer=tokenizer)
    config = VoxtralConfig(
        audio_config={
            "hidden_size": 32,
            # The projector reads 4 encoder frames at once (reshape to intermediate_size): 50 Hz -> 12.5 Hz.
            "intermediate_size": 128,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_mel_bins": 128,
            "max_source_positions": 1500,
        },
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "vocab_size": vocab_size,
            "max_position_embeddings": 32768,
        },
        audio_token_id=processor.audio_token_id,
    )
    model = seeded(VoxtralForConditionalGeneration, config, seed)
    save(
        directory,
        model,
        processor,
        eos=tokenizer.eos_token_id,
        pad=tokenizer.pad_token_id,
        bos=tokenizer.bos_token_id,
    )
