"""`python -m benchmarks gpu`: time to first token and tokens/s of the full-size default architecture.

Random weights with the default model's configuration (Qwen2-Audio-7B: Whisper-large audio encoder,
7B Qwen2 decoder, bf16) on a CUDA device, fed a turn of speech-length audio with a conversation's
worth of prompt around it. N sessions ask at once and are served the way the transformers backend
serves them: one generation at a time per device. Skipped (and says so) without a CUDA device;
`--device cpu --config tiny` runs the same code on the tiny checkpoint, as its test does.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration, WhisperFeatureExtractor
from transformers.generation.streamers import BaseStreamer

from benchmarks.report import RESULTS, format_table, machine, now, write_json

AUDIO_SECONDS = 4.0
PROMPT_TEXT_TOKENS = 300
"""System prompt and earlier replies as text, around the audio."""


class TokenClock(BaseStreamer):
    """Notes when each new token comes out of `generate`."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompt
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self) -> None:
        return None


def config_for(name: str) -> Qwen2AudioConfig:
    if name == "default":
        # Qwen/Qwen2-Audio-7B-Instruct's config.json: Whisper-large-v3-sized encoder, 7B Qwen2 decoder.
        return Qwen2AudioConfig(
            audio_token_index=151646,
            text_config={
                "hidden_size": 4096,
                "intermediate_size": 11008,
                "num_hidden_layers": 32,
                "num_attention_heads": 32,
                "num_key_value_heads": 32,
                "vocab_size": 156032,
                "max_position_embeddings": 8192,
                "rope_theta": 10000,
                "rms_norm_eps": 1e-5,
            },
        )
    return Qwen2AudioConfig(
        audio_config={
            "d_model": 32,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
        },
        text_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "vocab_size": 1000,
        },
        audio_token_index=999,
    )


def build(config: Qwen2AudioConfig, device: torch.device) -> Any:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:
            model = Qwen2AudioForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    return model.eval()


def inputs_for(config: Qwen2AudioConfig, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    audio = (rng.standard_normal(int(AUDIO_SECONDS * 16_000)) * 0.05).astype(np.float32)
    features = WhisperFeatureExtractor(feature_size=config.audio_config.num_mel_bins)(
        audio, sampling_rate=16_000, return_attention_mask=True, padding="max_length", return_tensors="pt"
    )
    frames = int(features["attention_mask"].sum())
    audio_tokens = ((frames - 1) // 2 + 1 - 2) // 2 + 1
    vocab = config.text_config.vocab_size
    text = torch.from_numpy(rng.integers(0, min(vocab, 150_000) - 10, PROMPT_TEXT_TOKENS))
    text[text == config.audio_token_index] = 0
    ids = torch.cat([text[:200], torch.full((audio_tokens,), config.audio_token_index), text[200:]])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    return {
        "input_ids": ids.unsqueeze(0).to(device),
        "attention_mask": torch.ones(1, len(ids), dtype=torch.long, device=device),
        "input_features": features["input_features"].to(device, dtype),
        "feature_attention_mask": features["attention_mask"].to(device),
    }


def serve_at_once(
    model: Any, requests: list[dict[str, torch.Tensor]], new_tokens: int
) -> list[dict[str, float]]:
    """All requests arrive together; one generation at a time holds the device, as in the backend."""
    lock = threading.Lock()
    arrived = time.perf_counter()
    results: list[dict[str, float]] = [{} for _ in requests]

    def session(i: int) -> None:
        clock = TokenClock()
        with lock, torch.inference_mode():
            model.generate(
                **requests[i],
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                streamer=clock,
            )
        if len(clock.times) > 1:
            rate = (len(clock.times) - 1) / (clock.times[-1] - clock.times[0])
        else:
            rate = float("nan")
        results[i] = {"ttft_s": clock.times[0] - arrived, "tokens_per_s": rate}

    threads = [threading.Thread(target=session, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks gpu", description=__doc__)
    parser.add_argument("--sessions", default="1,2,4,8")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", choices=["default", "tiny"], default="default")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    args = parser.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu benchmark skipped: no CUDA device on this machine")
        write_json(
            args.out, {"benchmark": "gpu", "date": now(), "machine": machine(), "skipped": "no CUDA device"}
        )
        return
    device = torch.device(args.device)
    config = config_for(args.config)
    model = build(config, device)
    serve_at_once(model, [inputs_for(config, device, 0)], 4)  # warm-up: kernels, allocator

    rows, levels = [], []
    for count in (int(n) for n in args.sessions.split(",")):
        results = serve_at_once(model, [inputs_for(config, device, i) for i in range(count)], args.new_tokens)
        ttfts = [r["ttft_s"] for r in results]
        level = {
            "sessions": count,
            "ttft_first_s": min(ttfts),
            "ttft_p50_s": statistics.median(ttfts),
            "ttft_max_s": max(ttfts),
            "tokens_per_s_per_session": statistics.mean(r["tokens_per_s"] for r in results),
        }
        levels.append(level)
        rows.append(
            [
                str(count),
                *(f"{level[k]:.3f}" for k in ("ttft_first_s", "ttft_p50_s", "ttft_max_s")),
                f"{level['tokens_per_s_per_session']:.1f}",
            ]
        )
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.config} Qwen2-Audio architecture, random weights, on {device_name}")
    print(format_table(["sessions", "TTFT first s", "TTFT p50 s", "TTFT max s", "tokens/s"], rows))
    write_json(
        args.out,
        {
            "benchmark": "gpu",
            "date": now(),
            "machine": machine(),
            "device": device_name,
            "config": args.config,
            "audio_seconds": AUDIO_SECONDS,
            "levels": levels,
        },
    )
    print(f"\nwritten to {args.out}")
