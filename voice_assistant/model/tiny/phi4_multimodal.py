"""Tiny Phi-4-multimodal: conformer audio encoder, SigLIP vision encoder, Phi-3 decoder, speech LoRA.

Laid out as Microsoft's transformers-format checkpoint is: `<|audio|>` and `<|image|>` named on the
tokenizer (the processor reads them from there), the processor's chat template with `<|user|>` ...
`<|end|>` turns, and the speech LoRA adapter in the `speech-lora` subfolder (peft), which the backend
loads and activates: without it Phi-4 does not listen.

Building needs torchvision (the processor holds the image processor) and peft (the adapter).
"""

from __future__ import annotations

from pathlib import Path

from voice_assistant.model.tiny._common import TEXT_DIMS, save, seeded
from voice_assistant.model.tiny._tokenizer import train_byte_level_bpe

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif content['type'] == 'audio' %}{{ '<|audio|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'system' and 'tools' in message and message['tools'] is not none %}"
    "{{ '<|tool|>' + message['tools'] + '<|/tool|>' + '<|end|>' }}{% endif %}"
    "{{ '<|end|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}"
)
SPECIALS = [
    "<|endoftext|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|tool|>",
    "<|/tool|>",
    "<|image|>",
    "<|audio|>",
]
SPEECH_LORA = r"model\.layers\.\d+\.((self_attn\.(qkv_proj|o_proj))|(mlp\.(gate_up_proj|down_proj)))"
"""The decoder projections that Microsoft's speech LoRA adapts."""


def build(directory: Path, seed: int) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import (
        GPT2Tokenizer,
        Phi4MultimodalConfig,
        Phi4MultimodalFeatureExtractor,
        Phi4MultimodalForCausalLM,
        Phi4MultimodalImageProcessor,
        Phi4MultimodalProcessor,
    )

    tokenizer = GPT2Tokenizer(
        tokenizer_object=train_byte_level_bpe(SPECIALS),
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:],
        extra_special_tokens={"image_token": "<|image|>", "audio_token": "<|audio|>"},
    )
    processor = Phi4MultimodalProcessor(
        image_processor=Phi4MultimodalImageProcessor(),
        audio_processor=Phi4MultimodalFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    end: int = tokenizer.convert_tokens_to_ids("<|end|>")  # type: ignore[assignment]  # one token
    config = Phi4MultimodalConfig(
        **TEXT_DIMS,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, end],
        pad_token_id=tokenizer.pad_token_id,
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_token_id": tokenizer.image_token_id,
        },
        audio_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_blocks": 1,
            "num_attention_heads": 2,
            "ext_pw_out_channel": 32,
            "depthwise_separable_out_channel": 32,
            "nemo_conv_channels": 32,
            "audio_token_id": tokenizer.audio_token_id,
        },
    )
    model = seeded(Phi4MultimodalForCausalLM, config, seed)
    save(directory, model, processor, eos=[tokenizer.eos_token_id, end], pad=tokenizer.pad_token_id)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=SPEECH_LORA))
    lora.save_pretrained(directory / "speech-lora")  # the adapter's weights and config only
