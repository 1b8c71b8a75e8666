"""`python -m core reproduce RUN_ID`: rerun a logged run from its params and compare, epoch by epoch."""

from __future__ import annotations

import argparse
import sys

from core import signals

HELP = "rerun a logged run from its params and compare the two runs epoch by epoch"
EXAMPLES = ["python -m core reproduce RUN_ID                (the run id that train or study printed)",
            "python -m core reproduce RUN_ID --epochs 3     (only the first 3 epochs)",
            "python -m core reproduce RUN_ID --tolerance 1e-3"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--epochs", type=int, help="rerun only this many epochs (and compare those)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest difference that still agrees when bit-identity is not expected (default 1e-4)")
    parser.add_argument("--allow-data-change", action="store_true", help="rerun even if the data's fingerprint differs")
    parser.add_argument("--allow-code-change", action="store_true",
                        help="rerun even if the run's own model, data or metric code (logged under code/) changed")


def main(args: argparse.Namespace) -> int:
    from core.reproduce import reproduce  # torch loads here, not for --help or a usage error

    signals.install_signal_handlers()
    result = reproduce(args.run_id, args.epochs, args.tolerance, args.allow_data_change, args.allow_code_change)
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    print(f"{'epoch':>5}  {'metric':<10} {'original':>14} {'reproduced':>14}")
    for epoch, key, old, new in result.rows:
        mark = "" if (old == new if result.exact else abs(old - new) <= result.tolerance) else "  <- differs"
        print(f"{epoch:>5}  {key:<10} {old:>14.8g} {new:>14.8g}{mark}")
    expectation = "bit-identical" if result.exact else f"within {result.tolerance:g}"
    if result.agree:
        print(f"agree ({expectation}): reproduced as run {result.run_id}")
        return 0
    print(f"DIFFER ({expectation} expected): first at epoch {result.first_divergence}; new run {result.run_id}")
    return 1
