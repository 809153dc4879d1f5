"""Tiny Qwen2-Audio: Whisper-style audio encoder + Qwen2 decoder, ChatML template with <|AUDIO|>."""

from __future__ import annotations

from pathlib import Path

from voice_assistant.model.tiny._common import TEXT_DIMS, save, seeded
from voice_assistant.model.tiny._tokenizer import qwen2_tokenizer


def build(directory: Path, seed: int) -> None:
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    tokenizer = qwen2_tokenizer(["<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"])
    processor = Qwen2AudioProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer
    )
    config = Qwen2AudioConfig(
        audio_config={
            "d_model": 32,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "num_mel_bins": 128,
            "max_source_positions": 1500,
        },
        text_config={"model_type": "qwen2", **TEXT_DIMS, "vocab_size": len(tokenizer)},
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    model = seeded(Qwen2AudioForConditionalGeneration, config, seed)
    save(
        directory,
        model,
        processor,
        eos=[tokenizer.convert_tokens_to_ids("<|im_end|>")],
        pad=tokenizer.pad_token_id,
    )
