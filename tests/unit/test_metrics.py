"""`va_asyncio_tasks`: the serving loop's live tasks, counted when `/metrics` is scraped, and passed on
by the workers' proxy with each worker's label."""

from __future__ import annotations

import asyncio
import math

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from voice_assistant.metrics import Metrics
from voice_assistant.workers.proxy import labelled_metrics

pytestmark = pytest.mark.unit


def tasks_in(text: str) -> dict[str, float]:
    """`va_asyncio_tasks` of an exposition, by its worker label ("" for a worker's own)."""
    return {
        sample.labels.get("worker", ""): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "va_asyncio_tasks"
        for sample in family.samples
    }


async def test_the_loops_tasks_are_counted_at_each_scrape() -> None:
    metrics = Metrics()
    before = tasks_in(generate_latest(metrics.registry).decode())[""]
    release = asyncio.Event()
    waiting = [asyncio.create_task(release.wait()) for _ in range(5)]
    assert tasks_in(generate_latest(metrics.registry).decode())[""] == before + 5
    release.set()
    await asyncio.gather(*waiting)
    assert tasks_in(generate_latest(metrics.registry).decode())[""] == before


def test_no_loop_reads_as_nan() -> None:
    assert math.isnan(tasks_in(generate_latest(Metrics().registry).decode())[""])


async def test_the_proxy_passes_each_workers_count_on() -> None:
    text = generate_latest(Metrics().registry).decode()
    merged = tasks_in(labelled_metrics([text, text]))
    assert set(merged) == {"0", "1"} and merged["0"] >= 1
