"""Tiny Granite Speech: conformer encoder + windowed Q-Former projector + Granite decoder.

The checkpoint carries its chat template on the tokenizer, not the processor, as IBM's do (their model
card renders prompts with `tokenizer.apply_chat_template`). The template is Granite 3.3's, less the
tools, documents, thinking and controls branches that a voice turn never reaches: text-only content,
`<|audio|>` written into it, and a dated default system prompt when none is given.

`GraniteSpeechFeatureExtractor` computes its mel spectrogram with torchaudio, so building (and
loading) needs `torchaudio`. Like IBM's, the checkpoint carries a LoRA adapter on the decoder's query and
value projections beside its weights (`has_lora_adapter`): `from_pretrained` loads it through peft, and
Granite's `generate()` switches it on for audio and off for text, through the adapter methods whose
peft version transformers checks. Building needs peft too.
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
AUDIO_LORA = r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|v_proj)"
"""The decoder projections that IBM's audio LoRA adapts."""


def build(directory: Path, seed: int) -> None:
    from peft import LoraConfig, get_peft_model
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
        has_lora_adapter=True,
    )
    model = seeded(GraniteSpeechForConditionalGeneration, config, seed)
    save(directory, model, processor, eos=[tokenizer.eos_token_id], pad=tokenizer.pad_token_id)
    # Random B as well as A (peft starts B at zero), so that the adapter changes what the model says.
    adapter = LoraConfig(r=4, lora_alpha=8, target_modules=AUDIO_LORA, init_lora_weights=False)
    lora = get_peft_model(model, adapter)
    lora.save_pretrained(directory)  # adapter_config.json and adapter_model.safetensors beside the weights
