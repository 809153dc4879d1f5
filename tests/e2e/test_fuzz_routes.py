"""The fuzz pass (benchmarks/fuzz.py) against a real server process: malformed, oversized and out-of-order
messages to every HTTP and WebSocket route, each answered with a 4xx and a JSON error, an `error` event or
a close with a reason; no 5xx, no dropped connection, no traceback in the log; the server alive, and a
bystander (a REST session, a Realtime connection with a typed turn before and after) unharmed."""

from __future__ import annotations

import pytest

from benchmarks.fuzz import ROUTES, fuzz_routes
from benchmarks.server import ServerProcess
from tests.support.servers import Servers

pytestmark = pytest.mark.e2e

CASES = 100
"""Per route: 700 cases, 10-15 s on this shared 2-core machine (and the server's start)."""
SEED = 14


@pytest.fixture(scope="module")
def server(servers: Servers) -> ServerProcess:
    # Room for the pass: every case that rings the webhook holds a call's place until its token runs out.
    return servers.start(
        "fuzz", {"VA_MAX_NEW_TOKENS": "16", "VA_MAX_CALLS": "1000", "VA_CALL_TOKEN_TTL_S": "5"}
    )


async def test_every_route_answers_every_malformed_message_and_the_bystander_is_unharmed(
    server: ServerProcess,
) -> None:
    report = await fuzz_routes(server.url, cases=CASES, seed=SEED)
    print("\n" + report.table())
    assert report.cases == dict.fromkeys(ROUTES, CASES)
    assert (report.server_errors, report.unclear, report.crashes) == (0, 0, 0), report.offending
    assert report.alive and report.bystander_ok, report.bystander
    assert server.process is not None and server.process.poll() is None
    assert "Traceback" not in server.log_path.read_text(errors="replace")
