"""Tiny Granite Speech: conformer encoder + windowed Q-Former projector + Granite decoder.

The checkpoint carries its chat template on the tokenizer, not the processor, as IBM's do (their model
card renders prompts with `tokenizer.apply_chat_template`). The template is Granite 3.3's, less the
tools, documents, thinking and controls branches that a voice turn never reaches: text-only content,
`<|audio|>` written into it, and a dated default system prompt when none is given.

`GraniteSpeechFeatureExtractor` computes its mel spectrogram with torchaudio, so building (and
loading) needs `torchaudio`. The LoRA adapter of IBM's checkpoints is left out (`has_lora_adapter`
false): it needs peft and changes nothing that these tests look at.
"""

from __future__ import annotations

from pathlib import Path

from voice_assistant.model.tiny._common import TEXT_DIMS, save, seeded
from voice_assistant.model.tiny._tokenizer import train_byte_level_bpe

_TURN = (
    "'<|start_of_role|>' + message['role'] + '<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n'"
)
CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}"
    '{%- set system_message = "Knowledge Cutoff Date: April 2024.\\nToday\'s Date: " + '
    "strftime_now('%B %d, %Y') + \".\\nYou are Granite, developed by IBM.\" %}"
    '{%- set system_message = system_message + " You are a helpful AI assistant." %}'
    "{%- set loop_messages = messages %}"
    "{%- endif %}"
    "{{- '<|start_of_role|>system<|end_of_role|>' + system_message + '<|end_of_text|>\\n' }}"
    "{%- for message in loop_messages %}{{- " + _TURN + " }}"
    "{%- if loop.last and add_generation_prompt %}"
    "{{- '<|start_of_role|>assistant<|end_of_role|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
)
SPECIALS = ["<|end_of_text|>", "<|start_of_role|>", "<|end_of_role|>", "<|tool_call|>", "<|audio|>"]


def build(directory: Path, seed: int) -> None:
    from transformers import (
        GPT2Tokenizer,
        GraniteSpeechConfig,
        GraniteSpeechFeatureExtractor,
        GraniteSpeechForConditionalGeneration,
        GraniteSpeechProcessor,
    )

    tokenizer = GPT2Tokenizer(
        tokenizer_object=train_byte_level_bpe(SPECIALS),
        bos_token="<|end_of_text|>",
        eos_token="<|end_of_text|>",
        unk_token="<|end_of_text|>",
        pad_token="<|end_of_text|>",
        additional_special_tokens=SPECIALS[1:],
        chat_template=CHAT_TEMPLATE,
    )
    processor = GraniteSpeechProcessor(audio_processor=GraniteSpeechFeatureExtractor(), tokenizer=tokenizer)
    config = GraniteSpeechConfig(
        text_config={"model_type": "granite", **TEXT_DIMS, "vocab_size": len(tokenizer)},
        encoder_config={
            "input_dim": 160,  # two 80-bin mel frames stacked: the extractor's output
            "num_layers": 2,
            "hidden_dim": 32,
            "num_heads": 2,
            "output_dim": 8,
            "context_size": 200,
            "max_pos_emb": 512,
        },
        projector_config={
            "model_type": "blip_2_qformer",
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "encoder_hidden_size": 32,
            "cross_attention_frequency": 1,
        },
        audio_token_index=tokenizer.convert_tokens_to_ids("<|audio|>"),  # type: ignore[arg-type]  # one token
        has_lora_adapter=False,
    )
    model = seeded(GraniteSpeechForConditionalGeneration, config, seed)
    save(directory, model, processor, eos=[tokenizer.eos_token_id], pad=tokenizer.pad_token_id)
