"""The network fault scenarios where no network namespace can be made: skipped with why, not an exception
nor a failure (benchmarks/reliability/network.py; the scenarios themselves run in tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.reliability import Scenario, netpath, network
from benchmarks.reliability.scenario import Context

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("scenario", [network.loss_5, network.outage_3s, network.jitter])
async def test_without_root_a_scenario_is_skipped_with_why(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(netpath.os, "geteuid", lambda: 1000)
    outcome = await scenario(Context(tmp_path, None, short=True))
    assert outcome.checks == {} and outcome.passed and outcome.spoken == 0
    assert outcome.skipped is not None and "not root" in outcome.skipped


def test_without_nft_the_reason_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netpath.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netpath.shutil, "which", lambda tool: None if tool == "nft" else f"/usr/sbin/{tool}")
    assert netpath.unavailable() == "no nft on this machine (iproute2, nftables)"
