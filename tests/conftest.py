"""Shared fixtures: tiny real checkpoints, the real Silero model, real databases."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import MetaData

from tests.fakes import InlineStore
from tests.support.offers import browser_offer
from tests.support.postgres import fresh_database
from tests.support.servers import Servers
from voice_assistant.history.database import make_engine
from voice_assistant.history.store import HistoryStore
from voice_assistant.turn.vad import SileroModel

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The property tests draw the same examples on every run and every machine (derandomize), so that CI is
# reproducible and a failure here is one there; no time limit per example on a shared 2-core machine, and
# no example database left behind. Each test sets its own max_examples.
settings.register_profile("fixed", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("fixed")


@pytest.fixture(scope="session", autouse=True)
def webrtc_on_loopback() -> None:
    """The peers this process makes (VoiceClient, test offers) gather on 127.0.0.1, as the servers that
    ServerProcess starts do: test media never leaves the machine."""
    from benchmarks.server import keep_webrtc_on_loopback

    keep_webrtc_on_loopback()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from voice_assistant.model.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2_audio", "qwen2_audio")


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path):  # type: ignore[no-untyped-def]
    from voice_assistant.config import ModelSettings
    from voice_assistant.model.base import Sampling
    from voice_assistant.model.hf_local import TransformersAudioLM

    sampling = Sampling.from_settings(ModelSettings(max_new_tokens=12))
    return TransformersAudioLM.load(str(tiny_model_dir), device="cpu", sampling=sampling)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """The factory for a module's server processes: they run until the module's last test is done."""
    started = Servers(tmp_path_factory)
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def offer_sdp() -> str:
    """A browser-like offer (audio + data channel) to post to a server's offer routes."""
    return asyncio.run(browser_offer())


@pytest.fixture(scope="session")
def silero() -> SileroModel:
    return SileroModel()


def postgres_url() -> str | None:
    url = os.environ.get("VA_TEST_POSTGRES_URL")
    if url is None and IN_CI:
        pytest.fail("VA_TEST_POSTGRES_URL is not set: .ci/run starts PostgreSQL and sets it")
    return url


def empty_postgres(url: str) -> None:
    """Drop every table, alembic_version included, so that the next store starts from an empty database."""
    engine = make_engine(url)
    try:
        tables = MetaData()
        tables.reflect(engine)
        tables.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind the store runs on."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL here (set VA_TEST_POSTGRES_URL)")
    empty_postgres(url)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[HistoryStore]:
    history = HistoryStore(database_url)
    yield history
    history.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[HistoryStore]:
    history = HistoryStore(f"sqlite:///{tmp_path / 'history.db'}")
    yield history
    history.close()


@pytest.fixture
def inline_store() -> Iterator[InlineStore]:
    """In-memory SQLite, each call inline on the event loop: unit timelines with no thread to race."""
    history = InlineStore()
    yield history
    history.close()


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the module, dropped after it; skipped without one."""
    url = postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL here (set VA_TEST_POSTGRES_URL): several instances need one to share")
    with fresh_database(url) as database:
        yield database
