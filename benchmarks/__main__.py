"""`python -m benchmarks NAME [options]`: each benchmark is a module with a `main(argv)`.

Adding one is one line in BENCHMARKS; a module is imported only when its benchmark runs.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "endpointing": "benchmarks.endpointing",
    "tradeoff": "benchmarks.tradeoff",
    "load": "benchmarks.load",
    "pipeline": "benchmarks.pipeline",
    "gpu": "benchmarks.gpu",
    "phone": "benchmarks.phone",
    "realtime": "benchmarks.realtime",
    "reliability": "benchmarks.reliability",
    "soak": "benchmarks.soak",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        raise SystemExit(f"usage: python -m benchmarks {{{','.join(BENCHMARKS)}}} [options]")
    module = importlib.import_module(BENCHMARKS[sys.argv[1]])
    module.main(sys.argv[2:])


if __name__ == "__main__":
    main()
