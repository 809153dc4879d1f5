"""The one settings object: read from `VA_*` environment variables, overridden by CLI flags.

`Settings` is grouped by concern, and code reads a group's field (`settings.turns.min_silence_ms`):

- `model`: which model, and how replies are drawn from it (`settings.model.name` is `VA_MODEL`);
- `backend`: where it runs: in this process (`transformers`) or behind an OpenAI-compatible server;
- `history`: what the model hears of earlier turns (the window, the running summary), and whether turns get
  transcripts;
- `turns`: turn-taking (VAD, pauses, end of turn, speculation);
- `speech`: spoken replies (the TTS engine, and whether the browser hears them too);
- `phone`: Twilio calls;
- `web`: the HTTP server: address, public URL, limits, admin token, site keys, warm-up;
- `ice`: the STUN/TURN servers both ends of a WebRTC connection use (media behind NAT; ice_settings.py);
- `storage`: where the history and the tiny checkpoints live, and how long sessions are kept.

The environment keeps its flat names, one per field: a field is read from `VA_` + its name in upper case,
or + its `validation_alias` where the name inside the group differs (`VA_OPENAI_BASE_URL` is
`backend.base_url`, `VA_HISTORY_MAX_TURNS` is `history.max_turns`). The same flat names work as keywords,
`Settings(model="tiny", min_silence_ms=500)`, which is how the CLI flags, the tests and the benchmarks build
one; `FLAT_NAMES` lists where each goes. A group may also be given whole (`Settings(turns=TurnSettings())`),
and is then taken whole: the environment does not fill it in. Names that are no setting are ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from voice_assistant.flat_settings import (
    FlatEnvironment,
    FlatKeywords,
    SettingsGroup,
    flat_names,
    named_by_variable,
)
from voice_assistant.ice_addresses import IceAddresses
from voice_assistant.ice_settings import IceSettings

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


class ModelSettings(SettingsGroup):
    name: str = Field(
        default=DEFAULT_MODEL,
        validation_alias="model",
        description="Hub id or local path of an audio-language model, or 'tiny' (a random local checkpoint).",
    )
    tiny_family: str = Field(
        default="qwen2_audio", description="Architecture of the checkpoint that 'tiny' builds."
    )
    device: str = Field(default="auto", description="'auto' (CUDA when present), 'cpu', 'cuda', 'cuda:1' ...")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    trust_remote_code: bool = False
    max_new_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.7, ge=0.0)
    top_p: float = Field(default=0.9, gt=0.0, le=1.0)
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    reply_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A reply still generating or playing after this long is cut and stored as such.",
    )


class BackendSettings(SettingsGroup):
    """Where the model runs: in this process, or behind an OpenAI-compatible server (vLLM). The rest of
    the group is the server's, and used only with `kind="openai"`."""

    kind: Literal["transformers", "openai"] = Field(
        default="transformers",
        validation_alias="backend",
        description="'openai': an OpenAI-compatible server (e.g. vLLM) at base_url generates replies.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000/v1",
        validation_alias="openai_base_url",
        description="The server's URL up to /v1.",
    )
    api_key: SecretStr | None = Field(
        default=None, validation_alias="openai_api_key", description="The server's key (vLLM's --api-key)."
    )
    served_model: str | None = Field(
        default=None,
        validation_alias="openai_model",
        description="The name the server serves the model under; default: model.name.",
    )
    connect_timeout_s: float = Field(
        default=3.0,
        gt=0,
        validation_alias="openai_connect_timeout_s",
        description="Connecting to the server.",
    )
    first_token_timeout_s: float = Field(
        default=10.0,
        gt=0,
        validation_alias="openai_first_token_timeout_s",
        description="Request sent -> first text; a longer stall fails the reply (not retried).",
    )
    timeout_s: float = Field(
        default=60.0,
        gt=0,
        validation_alias="openai_timeout_s",
        description="Request sent -> last text of a reply.",
    )
    retries: int = Field(
        default=2,
        ge=0,
        validation_alias="openai_retries",
        description="Retries (backoff 0.5 s, doubling) on connection errors, 429, 5xx before text.",
    )
    audio_tokens_per_second: float | None = Field(
        default=None,
        gt=0,
        validation_alias="openai_audio_tokens_per_second",
        description="Prompt tokens per second of audio; default: the family's (25 if unknown).",
    )


class HistorySettings(SettingsGroup):
    """What the model hears of the history."""

    audio_turns: int = Field(
        default=4,
        ge=0,
        validation_alias="history_audio_turns",
        description="The last K turns (the current one included) go to the model as audio.",
    )
    max_turns: int = Field(
        default=32,
        ge=1,
        validation_alias="history_max_turns",
        description="Older turns than this are left out.",
    )
    token_budget: int = Field(
        default=6000,
        ge=256,
        validation_alias="history_token_budget",
        description="Estimated prompt tokens; the oldest turns are dropped to stay under it.",
    )
    transcripts: bool = Field(
        default=True,
        description="Ask the model for each turn's words once idle (stored, shown, used for old turns).",
    )
    summary_every: int = Field(
        default=8,
        ge=0,
        description="Once the window is full, fold this many of its oldest turns at a time into the running "
        "summary the model hears (idle time); 0: no summary, older turns are left out.",
    )
    summary_max_tokens: int = Field(
        default=200, ge=16, description="The running summary's size, in estimated tokens."
    )


class TurnSettings(SettingsGroup):
    """Turn-taking on Silero VAD's 32 ms frames; `turn/` turns these into frame counts."""

    vad_threshold: float = Field(
        default=0.5, gt=0.0, lt=1.0, description="Speech probability that starts speech."
    )
    vad_neg_threshold: float = Field(
        default=0.35,
        gt=0.0,
        lt=1.0,
        description="Probability under which a frame counts as silence (hysteresis).",
    )
    vad_batch_ms: float = Field(
        default=10.0,
        ge=0.0,
        le=32.0,
        description="How long a frame may wait to be scored with other sessions' in one run; 0: alone.",
    )
    min_speech_ms: int = Field(default=96, ge=32, description="Speech needed before a turn starts.")
    pause_ms: int = Field(
        default=200,
        ge=32,
        description="With end_of_turn=silence: the silence that makes a pause, where a reply may start.",
    )
    end_of_turn: Literal["silence", "smart-turn"] = Field(
        default="smart-turn",
        description="'smart-turn': Smart Turn v3's verdicts set the silence that ends each turn (over:"
        " short, doubtful: longer); 'silence': a fixed silence (min_silence_ms) ends it.",
    )
    # 650 ms: the shortest silence that split no sentence of the endpointing benchmark's synthetic set
    # (inner pauses up to 0.6 s); see README, "Benchmarks".
    min_silence_ms: int = Field(
        default=650,
        ge=64,
        description="With end_of_turn=silence: the silence after speech that ends the turn.",
    )
    # The defaults below come from `python -m benchmarks tradeoff` on the tuning part of the human set
    # (README, "Turn-taking"): the fastest of the settings that cut the fewest turns short.
    end_of_turn_judge_ms: tuple[int, ...] = Field(
        default=(64, 200, 300, 400, 600),
        description="Silences at which Smart Turn is asked whether the turn is over (a JSON list; the first"
        " is the pause).",
    )
    end_of_turn_quick_ms: int = Field(
        default=500, ge=32, description="The silence that ends a turn Smart Turn calls over."
    )
    end_of_turn_doubt_ms: int = Field(
        default=700, ge=32, description="The silence that ends a turn Smart Turn doubts (or cannot judge)."
    )
    end_of_turn_sure: float = Field(
        default=0.8, gt=0.0, le=1.0, description="Smart Turn's probability from which a turn is called over."
    )
    end_of_turn_unsure: float = Field(
        default=0.8,
        ge=0.0,
        lt=1.0,
        description="Smart Turn's probability up to which a turn is doubted (between the two: in between).",
    )
    max_silence_ms: int = Field(
        default=2500,
        ge=64,
        description="With end_of_turn=smart-turn: the silence that ends any turn, verdict or not.",
    )
    speculate_from: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Smart Turn's probability from which a reply starts speculatively, before the turn ends.",
    )
    smart_turn_path: Path | None = Field(
        default=None, description="Smart Turn ONNX file; default: the one pipecat-ai ships."
    )
    speculative_start: bool = Field(
        default=True, description="Start generating at a pause, before the turn is known over."
    )
    # 500 ms and 1.5 s: LiveKit Agents' defaults (min_interruption_duration, false_interruption_timeout).
    min_interruption_ms: int = Field(
        default=500,
        ge=0,
        description="Speech over a spoken reply pauses it; this long, it cuts it (0: cuts at once).",
    )
    false_interruption_timeout_s: float = Field(
        default=1.5,
        gt=0.0,
        description="Silence after the speech that paused a reply, with no turn proven, before it resumes.",
    )
    speech_pad_ms: int = Field(
        default=192, ge=0, description="Audio kept from before the detected speech start."
    )
    max_turn_seconds: float = Field(
        default=30.0, gt=1.0, description="A turn longer than this is cut and answered."
    )


class SpeechSettings(SettingsGroup):
    """Speech out: the voice of spoken replies."""

    engine: Literal["espeak", "kokoro"] = Field(
        default="espeak",
        validation_alias="tts",
        description="Speech engine for spoken replies (phone calls, and the browser when enabled).",
    )
    voice: str | None = Field(
        default=None,
        validation_alias="tts_voice",
        description="Engine voice; default: espeak en-us, Kokoro af_heart/jm_kumo.",
    )
    speed: float = Field(
        default=1.0, ge=0.5, le=2.0, validation_alias="tts_speed", description="Speaking-rate multiplier."
    )
    kokoro_model_path: Path | None = Field(
        default=None, description="kokoro-v1.0.onnx (with the voices file)."
    )
    kokoro_voices_path: Path | None = Field(default=None, description="voices-v1.0.bin.")
    webrtc: bool = Field(
        default=False,
        validation_alias="webrtc_speech",
        description="Also speak replies on the browser's WebRTC audio track.",
    )


class PhoneSettings(SettingsGroup):
    """Phone calls through Twilio Media Streams."""

    twilio_auth_token: SecretStr | None = Field(
        default=None, description="When set, webhooks without a valid X-Twilio-Signature get 403."
    )
    sessions: Literal["per-caller", "per-call"] = Field(
        default="per-caller",
        validation_alias="phone_sessions",
        description="'per-caller': a caller who calls back continues the conversation.",
    )
    greeting: str = Field(
        default="Hello! How can I help you?",
        validation_alias="phone_greeting",
        description="Spoken when a call connects.",
    )
    max_calls: int = Field(
        default=20, ge=1, description="Concurrent calls; past it a caller hears a polite refusal."
    )
    call_token_ttl_s: float = Field(
        default=60.0, gt=0, description="How long a call's one-time stream token is valid."
    )


class WebSettings(SettingsGroup):
    """The HTTP server, and which sites may use it from their pages (the embeddable widget, web/sites.py)."""

    host: str = "127.0.0.1"
    port: int = 7860
    public_url: str | None = Field(
        default=None,
        description="https://host the world reaches this server at: its own origin, the phone webhooks' "
        "signed URL and the wss:// stream.",
    )
    max_sessions: int = Field(
        default=64, ge=1, description="Concurrent WebRTC and Realtime connections (per worker)."
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Worker processes behind the one port; default: one per core when the model is remote "
        "or tiny, else 1 (each worker would load its own copy of a model).",
    )
    warmup: bool = Field(
        default=True, description="Run the VAD and the model once before /readyz turns true."
    )
    admin_token: SecretStr | None = None
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Keys a client of /v1/realtime must give (Authorization: Bearer KEY), comma-separated;"
        " none: the endpoint is open.",
    )
    client_secret_ttl_s: int = Field(
        default=600,
        ge=10,
        le=7200,
        description="How long a key minted by POST /v1/realtime/client_secrets lasts, unless asked for less.",
    )
    ice_addresses: IceAddresses = Field(
        default=(),
        description="WebRTC host candidates: LOCAL[=ANNOUNCED],... e.g. 127.0.0.1, or 10.0.0.5=203.0.113.7 "
        "behind a 1:1 NAT; default: every interface but loopback.",
    )
    sites: dict[str, list[str]] = Field(
        default_factory=dict,
        description='Site key -> origins whose pages may use it, e.g. {"shop": ["https://shop.example"]}.',
    )
    offers_per_minute_per_address: int = Field(
        default=30, ge=1, description="New WebRTC connections a client address may open per minute."
    )
    offers_per_minute_per_key: int = Field(
        default=600,
        ge=1,
        description="New WebRTC connections all the pages of one site key may open per minute.",
    )
    max_connections_per_key: int = Field(
        default=32, ge=1, description="WebRTC connections open at once through one site key."
    )
    # What one client may ask of the server, whatever it is (web/body_limit.py, transport/message_rate.py,
    # web/sites.py): past these it is refused, so that it cannot take the memory or the event loop that
    # every other connection shares.
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="The largest request body taken (413 past it)."
    )
    max_messages_per_second: float = Field(
        default=100.0,
        gt=0,
        description="Messages a client may send on a WebSocket (/v1/realtime, /telephone/stream), "
        "averaged over 10 s; past it the connection is closed (1008).",
    )
    max_sessions_per_address: int = Field(
        default=16,
        ge=1,
        description="WebRTC and Realtime connections open at once from one client address (all instances).",
    )
    # Admission control (voice_assistant/load.py): one event loop carries every connection's audio, so
    # its lag and its CPU are what run out first, and the audio it fails to read is what is lost; past
    # these, new offers and calls are refused (503).
    max_loop_lag_ms: float = Field(
        default=150.0,
        gt=0,
        description="Mean event-loop lag over the last seconds past which new offers and calls are refused.",
    )
    max_loop_cpu: float = Field(
        default=0.85,
        gt=0,
        le=1,
        description="Share of a core the event loop's thread may use (over the last seconds) before new "
        "offers and calls are refused.",
    )
    min_audio_rate: float = Field(
        default=0.9,
        ge=0,
        lt=1,
        description="Share of real time the connected streams' audio must arrive at (the median stream, "
        "over the last seconds) before new offers and calls are refused; 0: not judged.",
    )
    retry_after_s: int = Field(
        default=5,
        ge=1,
        description="Retry-After of an offer refused when overloaded, full, draining or at its site's limit.",
    )
    drain_timeout_s: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM, how long live conversations may take to finish their reply before the "
        "process stores everything and exits.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, keys: object) -> object:
        return tuple(key.strip() for key in keys.split(",") if key.strip()) if isinstance(keys, str) else keys

    @field_validator("sites")
    @classmethod
    def _origins_only(cls, sites: dict[str, list[str]]) -> dict[str, list[str]]:
        """A browser's `Origin` is `scheme://host[:port]`: anything else could never match, so say so."""
        return {key: [normalized_origin(origin) for origin in origins] for key, origins in sites.items()}


class StorageSettings(SettingsGroup):
    data_dir: Path = Field(default=Path.home() / ".local" / "share" / "voice-assistant")
    # Not in the settings' repr: the URL may hold the database's password.
    database_url: str | None = Field(
        default=None, repr=False, description="SQLAlchemy URL; default: SQLite in data_dir."
    )
    lease_ttl_s: float = Field(
        default=30.0,
        ge=1.0,
        description="How long an instance's share of the common limits (open connections per site key, "
        "calls) outlives it when it dies; it renews them every third of this.",
    )
    hold_seconds: float = Field(
        default=600.0,
        ge=0.0,
        validation_alias="store_hold_seconds",
        description="Seconds of user audio (about 2 MB a minute) a server holds while its database is "
        "unreachable, written in order once it is back; past this a turn is lost (and counted).",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Sessions with no turn for this many days are deleted with their audio (at start, "
        "then hourly); unset: kept until deleted through the API.",
    )

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'voice_assistant.db'}"


class Settings(BaseSettings):
    """Everything a deployment can change. Frozen: one value per process, passed down explicitly."""

    model_config = SettingsConfigDict(env_prefix="VA_", frozen=True, extra="ignore")

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise named_by_variable(exc, type(self)) from None

    model: ModelSettings = ModelSettings()
    backend: BackendSettings = BackendSettings()
    history: HistorySettings = HistorySettings()
    turns: TurnSettings = TurnSettings()
    speech: SpeechSettings = SpeechSettings()
    phone: PhoneSettings = PhoneSettings()
    web: WebSettings = WebSettings()
    ice: IceSettings = IceSettings()
    storage: StorageSettings = StorageSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keywords, then the flat `VA_*` environment (no .env file, no secrets directory), each routed
        into groups before they are merged, so that a keyword overrides only its own field of a group."""
        return FlatKeywords(settings_cls, init_settings), FlatEnvironment(settings_cls)


FLAT_NAMES = flat_names(Settings)
"""Flat name -> (group, field): `min_silence_ms` -> (`turns`, `min_silence_ms`), `model` -> (`model`,
`name`). The environment variable is `VA_` + the flat name in upper case."""
