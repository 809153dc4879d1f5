"""`voice-assistant`: serve, db, models, make-tiny-model."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from voice_assistant.config import ModelSettings, Settings
from voice_assistant.errors import ModelError
from voice_assistant.redaction import redact_server_logs

SERVE_FLAGS = ("model", "backend", "openai_base_url", "host", "port", "workers", "device", "min_silence_ms")
STORAGE_FLAGS = ("database_url", "data_dir")
SHUTDOWN_GRACE_S = 5


def _settings(args: argparse.Namespace, flags: tuple[str, ...]) -> Settings:
    """The environment's settings with the flags given on the command line on top."""
    overrides: dict[str, Any] = {
        flag: getattr(args, flag) for flag in flags if getattr(args, flag) is not None
    }
    return Settings(**overrides)


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from voice_assistant.model.registry import check_model

    settings = _settings(args, SERVE_FLAGS + STORAGE_FLAGS)
    check_model(settings)
    from voice_assistant.workers import supervisor

    workers = supervisor.worker_count(settings)
    if workers > 1:
        supervisor.serve(settings, _worker_command(args), workers=workers, log_level=args.log_level.lower())
        return

    from voice_assistant.web.app import create_app
    from voice_assistant.web.drain import DrainingServer

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.web.host,
        port=settings.web.port,
        log_level=args.log_level.lower(),
        # After the drain (SIGTERM) or at once (SIGINT): HTTP requests still open get this long.
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn raises a captured SIGINT again once stopped
        DrainingServer(config, drain=app.state.drain).run()


def _worker_command(args: argparse.Namespace) -> list[str]:
    """This `serve` command line for one worker: the same flags, one process (VA_WORKERS=1 in its
    environment), host and port its own."""
    command = [sys.executable, "-m", "voice_assistant", "--log-level", args.log_level, "serve"]
    for flag in SERVE_FLAGS + STORAGE_FLAGS:
        value = getattr(args, flag)
        if value is not None and flag not in ("host", "port", "workers"):
            command += ["--" + flag.replace("_", "-"), str(value)]
    return command


def _db(args: argparse.Namespace) -> None:
    from voice_assistant.history import migrate
    from voice_assistant.history.database import make_engine

    engine = make_engine(_settings(args, STORAGE_FLAGS).storage.resolved_database_url)
    try:
        if args.action == "upgrade":
            migrate.upgrade(engine)
        print(migrate.describe(engine))
    finally:
        engine.dispose()


def _storage_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--database-url", help="SQLAlchemy URL (env VA_DATABASE_URL, default SQLite in the data dir)"
    )
    command.add_argument("--data-dir", type=Path, help="data directory (env VA_DATA_DIR)")


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
        "--workers",
        type=int,
        help="worker processes behind the port (env VA_WORKERS; default: the cores with a remote or tiny "
        "model, else 1)",
    )
    _storage_flags(serve)
    serve.add_argument("--device", help="'auto', 'cpu', 'cuda', 'cuda:1' (env VA_DEVICE)")
    serve.add_argument("--min-silence-ms", type=int, help="silence that ends a turn (env VA_MIN_SILENCE_MS)")
    serve.set_defaults(run=_serve)

    db = commands.add_parser(
        "db", help="the database's schema: where it stands, and the upgrade that `serve` also does on start"
    )
    db.add_argument(
        "action",
        choices=["current", "upgrade"],
        help="current: print its revision; upgrade: bring it to the head",
    )
    _storage_flags(db)
    db.set_defaults(run=_db)

    models = commands.add_parser("models", help="the supported model families: licence, size, context, notes")
    models.set_defaults(run=_models)

    tiny = commands.add_parser(
        "make-tiny-model", help="build a tiny random checkpoint of a real architecture"
    )
    tiny.add_argument("directory", help="where to write it: a new (or empty) directory, never overwritten")
    tiny.add_argument(
        "--family", default=ModelSettings.model_fields["tiny_family"].default, help="transformers model_type"
    )
    tiny.set_defaults(run=_make_tiny_model)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_server_logs()  # this process's uvicorn too: a server's, or the worker proxy's
    for noisy in ("aioice", "aiortc", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        args.run(args)
    except (ModelError, FileExistsError) as exc:  # what the user must change: said in one line
        sys.exit(f"voice-assistant {args.command}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
