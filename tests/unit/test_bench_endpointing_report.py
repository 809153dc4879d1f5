"""The endpointing benchmark's report, on hand-made recordings and runs: each set apart, human first,
its held-out turns apart, and the JSON file structured by set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from benchmarks.dataset import Recording, TurnLabel
from benchmarks.endpointing import LIVEKIT, PEER, Run, System, report, system_names
from benchmarks.server import ServerProcess

pytestmark = pytest.mark.unit

TURNS = (
    TurnLabel(text="a", start=1.0, end=2.0, pauses=((1.4, 1.7),), kind="inserted pause"),
    TurnLabel(text="b", start=4.0, end=5.0, pauses=(), kind="short"),
)


def recording(name: str, split: str = "tune", voice: str = "asterisk") -> Recording:
    return Recording.model_validate(
        {"name": name, "wav": f"{name}.wav", "voice": voice, "speed": None, "snr_db": None, "noise": None}
        | {"duration": 8.0, "turns": TURNS, "split": split}
    )


def test_each_set_is_reported_apart_the_human_one_first_with_its_splits(
    capsys: pytest.CaptureFixture[str],
) -> None:
    systems = [System(name, cast(ServerProcess, None), {}) for name in ("ours", LIVEKIT[0], PEER)]
    human = [recording("h00"), recording("h01", split="held-out")]
    synthetic = [recording("00", voice="en-us")]
    # Ours ends every turn 0.3 s after it, LiveKit's 0.55 s; the peer cuts h01's first turn at its pause.
    detections = {"ours": [2.3, 5.3], LIVEKIT[0]: [2.55, 5.55], PEER: [2.8, 5.8]}
    runs = {(r.name, s): Run(list(detections[s]), 0.1, []) for r in (*human, *synthetic) for s in detections}
    runs["h01", PEER] = Run([1.5, 2.8, 5.8], 0.1, [])

    out = report(
        system_names(systems, []),
        systems,
        {"human": (Path("h"), human), "synthetic": (Path("s"), synthetic)},
        ({}, runs),
    )

    printed = capsys.readouterr().out
    assert printed.index("human set: 2 recordings, 4 turns") < printed.index("synthetic set: 1 recordings")
    assert printed.index("system, split") < printed.index("system, turn") < printed.index("system, SNR")
    sets = out["sets"]
    assert list(sets) == ["human", "synthetic"]
    assert sets["human"]["summary"]["ours"]["p50"] == pytest.approx(0.3)
    assert sets["human"]["summary"][LIVEKIT[0]]["p50"] == pytest.approx(0.55)
    by_split: dict[str, Any] = sets["human"]["by"]["split"]
    assert (
        by_split[f"{PEER}, held-out"]["false_splits"] == 1 and by_split[f"{PEER}, tune"]["false_splits"] == 0
    )
    assert by_split["ours, held-out"]["turns"] == 2
    assert {row["recording"] for row in sets["synthetic"]["turns"]} == {"00"}
    assert sets["human"]["dataset"]["recordings"][1]["split"] == "held-out"
