"""`voice-assistant`: serve, make-tiny-model."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from voice_assistant.config import Settings


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from voice_assistant.web.app import create_app

    overrides: dict[str, Any] = {
        key: value
        for key, value in {
            "model": args.model,
            "backend": args.backend,
            "openai_base_url": args.openai_base_url,
            "host": args.host,
            "port": args.port,
            "database_url": args.database_url,
            "data_dir": args.data_dir,
            "device": args.device,
            "min_silence_ms": args.min_silence_ms,
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower())


def _make_tiny_model(args: argparse.Namespace) -> None:
    from voice_assistant.model.tiny import build_tiny_model

    directory = build_tiny_model(Path(args.directory), args.family)
    print(f"tiny {args.family} checkpoint written to {directory}")


def _models(args: argparse.Namespace) -> None:
    from voice_assistant.model.families import FAMILIES
    from voice_assistant.model.tiny import families as tiny_families

    buildable = set(tiny_families())
    for family in FAMILIES.values():
        clips = "one clip per prompt" if family.max_clips == 1 else "a clip per turn"
        if family.model_type in buildable:
            tested = f"tested on a tiny checkpoint (make-tiny-model --family {family.model_type})"
            if family.test_environment:
                tested += f" {family.test_environment}"
        else:
            tested = "not tested here"
        print(f"{family.model_type}: {family.title} ({family.checkpoint})")
        size = f"{family.parameters} parameters; {family.context_tokens} tokens of context"
        print(f"  licence {family.licence}; {size}")
        print(f"  audio: up to {family.max_clip_seconds:g} s per turn, {clips}; {tested}")
        if family.extra:
            print(f"  needs: pip install 'voice-assistant[{family.extra}]'")
        if family.notes:
            print(f"  {family.notes}")
    print("served by vLLM (VA_BACKEND=openai): Ultravox and the large models; see the README.")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="voice-assistant", description=__doc__)
    root.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = root.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the browser voice chat and the client API")
    serve.add_argument("--model", help="hub id, local path, or 'tiny' (env VA_MODEL)")
    serve.add_argument(
        "--backend",
        choices=["transformers", "openai"],
        help="run the model here, or ask an OpenAI-compatible server such as vLLM (env VA_BACKEND)",
    )
    serve.add_argument(
        "--openai-base-url", help="the server's URL up to /v1 (env VA_OPENAI_BASE_URL) for --backend openai"
    )
    serve.add_argument("--host", help="bind address (env VA_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env VA_PORT, default 7860)")
    serve.add_argument(
        "--database-url", help="SQLAlchemy URL (env VA_DATABASE_URL, default SQLite in the data dir)"
    )
    serve.add_argument("--data-dir", type=Path, help="data directory (env VA_DATA_DIR)")
    serve.add_argument("--device", help="'auto', 'cpu', 'cuda', 'cuda:1' (env VA_DEVICE)")
    serve.add_argument("--min-silence-ms", type=int, help="silence that ends a turn (env VA_MIN_SILENCE_MS)")
    serve.set_defaults(run=_serve)

    models = commands.add_parser("models", help="the supported model families: licence, size, context, notes")
    models.set_defaults(run=_models)

    tiny = commands.add_parser(
        "make-tiny-model", help="build a tiny random checkpoint of a real architecture"
    )
    tiny.add_argument("directory")
    tiny.add_argument(
        "--family", default=Settings.model_fields["tiny_family"].default, help="transformers model_type"
    )
    tiny.set_defaults(run=_make_tiny_model)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    args.run(args)


if __name__ == "__main__":
    main(sys.argv[1:])
