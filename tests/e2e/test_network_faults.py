"""A network fault on a real caller's path, through the reliability benchmark's own code
(benchmarks/reliability/network.py): the server in a network namespace of its own, the caller across a veth
pair, and a 3 s outage (nftables dropping every packet both ways) at the first word of a spoken reply.
Every turn spoken ends once and is stored, and the next turn after the outage is answered."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.reliability import HEADER, row
from benchmarks.reliability.netpath import NetPath, sh, unavailable
from benchmarks.reliability.network import outage_3s
from benchmarks.reliability.scenario import Context
from benchmarks.report import format_table

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def network_namespaces() -> None:
    if reason := unavailable():
        pytest.skip(f"network faults need a namespace, a veth pair and nftables: {reason}")


def test_what_a_killed_run_left_is_removed_before_the_next_path_is_made() -> None:
    # A run killed with its path up (a namespace with a process in it, a veth pair, a table).
    dead = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from benchmarks.reliability.netpath import NetPath as P;"
            " p = P(); print(p.namespace, p.here, p.table); os._exit(0)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    namespace, device, table = dead
    left = subprocess.Popen(["ip", "netns", "exec", namespace, "sleep", "600"])
    for _ in range(100):  # until it is in there
        if str(left.pid) in sh("ip", "netns", "pids", namespace).split():
            break
        time.sleep(0.05)
    assert namespace in sh("ip", "netns", "list") and table in sh("nft", "list", "tables")
    path = NetPath()
    try:
        assert namespace not in sh("ip", "netns", "list")
        assert table not in sh("nft", "list", "tables")
        assert device not in sh("ip", "-o", "link")
        assert left.wait(5) == -9  # what still ran inside, killed
    finally:
        path.close()


async def test_a_3_s_outage_mid_reply_loses_no_turn_and_the_next_turn_is_answered(tmp_path: Path) -> None:
    outcome = await outage_3s(Context(tmp_path, None, short=True))
    print("\n" + format_table(HEADER, [row(outcome)]) + "\n" + outcome.notes)
    assert outcome.passed, outcome.to_json()
    assert outcome.spoken == outcome.committed == outcome.stored == 2  # the cut reply's turn, then the next
    assert outcome.recovery_s is not None
    # Nothing of the path is left: no namespace, no table.
    assert "vanet-" not in sh("ip", "netns", "list") and "vanet_" not in sh("nft", "list", "tables")
