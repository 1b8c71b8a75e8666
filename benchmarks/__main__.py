"""`python -m benchmarks [--quick]` (or `make bench`): every benchmark, one table.

Each figure is a ratio measured side by side in this one run. The table is
printed and written to benchmarks/results/latest.md and latest.json.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import time

from benchmarks.table import markdown, save

MODULES = ["benchmarks.trainer", "benchmarks.tracking_overhead", "benchmarks.study", "benchmarks.regression",
           "benchmarks.threads", "benchmarks.data", "benchmarks.gpu"]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (under 2 minutes on 2 cores)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    rows = []
    for name in MODULES:
        module = importlib.import_module(name)
        rows += module.run(args.quick)
    title = f"benchmarks ({'quick' if args.quick else 'full'}, {time.perf_counter() - started:.0f} s)"
    print(markdown(rows, title))
    print(f"\nsaved: {save(rows, title, 'latest' if not args.quick else 'latest-quick')}")


if __name__ == "__main__":
    main()
