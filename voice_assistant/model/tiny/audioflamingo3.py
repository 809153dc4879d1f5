"""Tiny Audio Flamingo 3: Whisper-style encoder with average pooling + Qwen2 decoder, `<sound>` placeholder.

The two chat templates render what `nvidia/audio-flamingo-3-hf` ships (its conversion script writes
them): ChatML with a default system prompt, and one `<sound>` ahead of a user message's text when the
message holds audio. The processor splits audio into 30 s windows and expands that one `<sound>` into
25 tokens per second of the clip.
"""

from __future__ import annotations

from pathlib import Path

from voice_assistant.model.tiny._common import TEXT_DIMS, save, seeded
from voice_assistant.model.tiny._tokenizer import qwen2_tokenizer

_DEFAULT_SYSTEM = "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"

TOKENIZER_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}" + _DEFAULT_SYSTEM + "{% endif %}"
    "{% for message in messages if message['content'] is not none %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
PROCESSOR_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}" + _DEFAULT_SYSTEM + "{% endif %}"
    "{% for m in messages if m['content'] is not none %}"
    "{{ '<|im_start|>' + m['role'] + '\\n' }}"
    "{% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}"
    "{% set audio = namespace(found=False) %}{% set text = namespace(v='') %}"
    "{% for c in m['content'] %}"
    "{% if c.get('type') == 'audio' or 'audio' in c %}{% set audio.found = True %}"
    "{% elif c.get('type') == 'text' or 'text' in c %}{% set text.v = text.v + c['text'] %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if audio.found %}{{ '<sound>' }}{% endif %}{{ text.v }}"
    "{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build(directory: Path, seed: int) -> None:
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        WhisperFeatureExtractor,
    )

    tokenizer = qwen2_tokenizer(["<sound>"], chat_template=TOKENIZER_TEMPLATE)
    processor = AudioFlamingo3Processor(
        feature_extractor=WhisperFeatureExtractor(feature_size=128, return_attention_mask=True),
        tokenizer=tokenizer,
        chat_template=PROCESSOR_TEMPLATE,
    )
    config = AudioFlamingo3Config(
        audio_config={
            "hidden_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "num_mel_bins": 128,
            "max_source_positions": 1500,
        },
        text_config={"model_type": "qwen2", **TEXT_DIMS, "vocab_size": len(tokenizer)},
        audio_token_id=processor.audio_token_id,
    )
    model = seeded(AudioFlamingo3ForConditionalGeneration, config, seed)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    save(directory, model, processor, eos=[end_of_turn, tokenizer.pad_token_id], pad=tokenizer.pad_token_id)
