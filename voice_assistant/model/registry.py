"""Which backend runs the model, by `settings.backend.kind`; each is imported only when chosen, so the
in-process one needs no openai client and the served one loads no torch."""

from __future__ import annotations

from collections.abc import Callable

from voice_assistant.config import Settings
from voice_assistant.errors import ModelError
from voice_assistant.model.base import AudioLM, Sampling
from voice_assistant.model.checkpoint import check_local_checkpoint

ModelLoader = Callable[[Settings], AudioLM]


def load_model(settings: Settings) -> AudioLM:
    """Blocking (weights load): the backend that `settings.backend.kind` names."""
    return _BACKENDS[settings.backend.kind](settings)


def check_model(settings: Settings) -> None:
    """What can be known wrong before serving (ModelError): a local checkpoint that is none, or whose
    family's packages are missing. The model itself loads in the background, once the server is up."""
    if settings.backend.kind == "transformers" and settings.model.name != "tiny":
        check_local_checkpoint(settings.model.name)


def _load_transformers(settings: Settings) -> AudioLM:
    """The transformers backend on `settings.model.name`; 'tiny' builds (once) and loads a checkpoint."""
    from voice_assistant.model.hf_local import TransformersAudioLM
    from voice_assistant.model.tiny import cached_tiny_model

    model = settings.model
    source = model.name
    if source == "tiny":
        source = str(cached_tiny_model(settings.storage.data_dir, model.tiny_family))
    check_local_checkpoint(source)
    return TransformersAudioLM.load(
        source,
        device=model.device,
        dtype=model.dtype,
        trust_remote_code=model.trust_remote_code,
        sampling=Sampling.from_settings(model),
    )


def _load_openai(settings: Settings) -> AudioLM:
    """A client of the OpenAI-compatible server (vLLM) that serves `served_model` (default: the model)."""
    try:
        from voice_assistant.model.openai_compat import OpenAICompatAudioLM, ServerOptions
    except ModuleNotFoundError as exc:
        if exc.name != "openai":
            raise
        raise ModelError("VA_BACKEND=openai needs the openai client: pip install 'openai>=1.52'") from exc
    return OpenAICompatAudioLM(ServerOptions.from_settings(settings))


_BACKENDS: dict[str, ModelLoader] = {"transformers": _load_transformers, "openai": _load_openai}
