"""The one settings object: read from `VA_*` environment variables, overridden by CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from voice_assistant.ice_addresses import IceAddresses

DEFAULT_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful voice assistant. You hear the user speak. Answer briefly, in plain spoken sentences."
)


def normalized_origin(origin: str) -> str:
    """An origin as browsers send it in `Origin`: `scheme://host[:port]`, lower case, no default port."""
    parts = urlsplit(origin.strip().lower())
    if (
        parts.scheme not in {"http", "https"}
        or not parts.hostname
        or "@" in parts.netloc
        or parts.path.strip("/")
        or parts.query
    ):
        raise ValueError(f"{origin!r} is not an origin like https://shop.example or http://host:8080")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    netloc = parts.netloc.removesuffix(f":{default_port}") if parts.port == default_port else parts.netloc
    return f"{parts.scheme}://{netloc}"


class Settings(BaseSettings):
    """Everything a deployment can change. Frozen: one value per process, passed down explicitly."""

    model_config = SettingsConfigDict(env_prefix="VA_", frozen=True, extra="ignore")

    # -- model
    model: str = Field(
        DEFAULT_MODEL,
        description="Hub id or local path of an audio-language model, or 'tiny' (a random local checkpoint).",
    )
    tiny_family: str = Field("qwen2_audio", description="Architecture of the checkpoint that 'tiny' builds.")
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1' ...")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    trust_remote_code: bool = False
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    # -- where the model runs: in this process, or behind an OpenAI-compatible server (vLLM)
    backend: Literal["transformers", "openai"] = Field(
        "transformers",
        description="'openai': an OpenAI-compatible server (e.g. vLLM) at openai_base_url generates replies.",
    )
    openai_base_url: str = Field("http://127.0.0.1:8000/v1", description="The server's URL up to /v1.")
    openai_api_key: SecretStr | None = Field(None, description="The server's key (vLLM's --api-key).")
    openai_model: str | None = Field(
        None, description="The name the server serves the model under; default: model."
    )
    openai_connect_timeout_s: float = Field(3.0, gt=0, description="Connecting to the server.")
    openai_first_token_timeout_s: float = Field(
        10.0, gt=0, description="Request sent -> first text; a longer stall fails the reply."
    )
    openai_timeout_s: float = Field(60.0, gt=0, description="Request sent -> last text of a reply.")
    openai_retries: int = Field(
        2, ge=0, description="Retries (backoff 0.5 s, doubling) on connection errors, 429, 5xx before text."
    )
    openai_audio_tokens_per_second: float | None = Field(
        None, gt=0, description="Prompt tokens per second of audio; default: the family's (25 if unknown)."
    )

    # -- what the model hears of the history
    history_audio_turns: int = Field(
        4, ge=0, description="The last K turns (the current one included) go to the model as audio."
    )
    history_max_turns: int = Field(32, ge=1, description="Older turns than this are left out entirely.")
    history_token_budget: int = Field(
        6000, ge=256, description="Estimated prompt tokens; the oldest turns are dropped to stay under it."
    )

    # -- turn detection (Silero VAD on 32 ms frames)
    vad_threshold: float = Field(0.5, gt=0.0, lt=1.0, description="Speech probability that starts speech.")
    vad_neg_threshold: float = Field(
        0.35, gt=0.0, lt=1.0, description="Probability under which a frame counts as silence (hysteresis)."
    )
    min_speech_ms: int = Field(96, ge=32, description="Speech needed before a turn starts.")
    pause_ms: int = Field(
        200,
        ge=32,
        description="Silence that makes a pause: the end-of-turn model is asked, a reply may start.",
    )
    # 650 ms: the shortest silence that split no sentence of the endpointing benchmark's set (inner
    # pauses up to 0.6 s); see README, "Benchmarks".
    min_silence_ms: int = Field(650, ge=64, description="Silence after speech that ends the turn.")
    end_of_turn: Literal["silence", "smart-turn"] = Field(
        "silence",
        description="'smart-turn': Smart Turn v3 may end a turn at a pause (faster, may cut a sentence).",
    )
    # 0.97: on Kokoro speech Smart Turn put every sentence end but one at 0.98-0.99 and every pause
    # inside a sentence at 0.94 or less; at 0.5 it ended 5 of 8 such pauses (espeak speech: no threshold
    # separates them). Human speech may differ: measure before lowering it.
    end_of_turn_threshold: float = Field(
        0.97, gt=0.0, lt=1.0, description="Smart Turn's probability of a finished turn that ends it early."
    )
    smart_turn_path: Path | None = Field(
        None, description="Smart Turn ONNX file; default: the one pipecat-ai ships."
    )
    transcripts: bool = Field(
        True, description="Ask the model for each turn's words once idle (stored, shown, used for old turns)."
    )
    speculative_start: bool = Field(
        True, description="Start generating at a pause, before the turn is known over."
    )
    speech_pad_ms: int = Field(192, ge=0, description="Audio kept from before the detected speech start.")
    max_turn_seconds: float = Field(30.0, gt=1.0, description="A turn longer than this is cut and answered.")

    # -- speech out
    tts: Literal["espeak", "kokoro"] = Field(
        "espeak", description="Speech engine for spoken replies (phone calls, and the browser when enabled)."
    )
    tts_voice: str | None = Field(
        None, description="Engine voice; default: espeak en-us, Kokoro af_heart/jm_kumo."
    )
    tts_speed: float = Field(1.0, ge=0.5, le=2.0, description="Speaking-rate multiplier.")
    kokoro_model_path: Path | None = Field(None, description="kokoro-v1.0.onnx (with the voices file).")
    kokoro_voices_path: Path | None = Field(None, description="voices-v1.0.bin.")
    webrtc_speech: bool = Field(False, description="Also speak replies on the browser's WebRTC audio track.")

    # -- phone (Twilio Media Streams)
    public_url: str | None = Field(
        None,
        description="https://host the world reaches this server at: the signed URL and the wss:// stream.",
    )
    twilio_auth_token: SecretStr | None = Field(
        None, description="When set, webhooks without a valid X-Twilio-Signature get 403."
    )
    phone_sessions: Literal["per-caller", "per-call"] = Field(
        "per-caller", description="'per-caller': a caller who calls back continues the conversation."
    )
    phone_greeting: str = Field("Hello! How can I help you?", description="Spoken when a call connects.")
    max_calls: int = Field(20, ge=1, description="Concurrent calls; past it a caller hears a polite refusal.")
    call_token_ttl_s: float = Field(
        60.0, gt=0, description="How long a call's one-time stream token is valid."
    )

    # -- server
    host: str = "127.0.0.1"
    port: int = 7860
    max_sessions: int = Field(64, ge=1, description="Concurrent WebRTC connections.")
    warmup: bool = Field(True, description="Run the VAD and the model once before /readyz turns true.")
    admin_token: SecretStr | None = None
    ice_addresses: IceAddresses = Field(
        (),
        description="WebRTC host candidates: LOCAL[=ANNOUNCED],... e.g. 127.0.0.1, or 10.0.0.5=203.0.113.7 "
        "behind a 1:1 NAT; default: every interface but loopback.",
    )

    # -- the embeddable widget: which sites may use this server from their pages (see web/sites.py)
    sites: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Site key -> origins whose pages may use it, e.g. {"shop": ["https://shop.example"]}.',
    )
    offers_per_minute_per_address: int = Field(
        30, ge=1, description="New WebRTC connections a client address may open per minute."
    )
    offers_per_minute_per_key: int = Field(
        600, ge=1, description="New WebRTC connections all the pages of one site key may open per minute."
    )
    max_connections_per_key: int = Field(
        32, ge=1, description="WebRTC connections open at once through one site key."
    )

    # -- storage
    data_dir: Path = Field(Path.home() / ".local" / "share" / "voice-assistant")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in data_dir.")

    @field_validator("sites")
    @classmethod
    def _origins_only(cls, sites: dict[str, list[str]]) -> dict[str, list[str]]:
        """A browser's `Origin` is `scheme://host[:port]`: anything else could never match, so say so."""
        return {key: [normalized_origin(origin) for origin in origins] for key, origins in sites.items()}

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'voice_assistant.db'}"
