"""`python -m core reproduce RUN_ID`: rerun a logged run from its logged config and compare, epoch by epoch."""

from __future__ import annotations

import argparse
import sys

from core import signals

HELP = "rerun a logged run from its logged config (config.yaml) and compare the two runs epoch by epoch"
EXAMPLES = ["python -m core reproduce RUN_ID                (the run id that train or study printed)",
            "python -m core reproduce RUN_ID --epochs 3     (only the first 3 epochs)",
            "python -m core reproduce RUN_ID --tolerance 1e-3"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--device", choices=("logged", "cpu", "cuda", "auto"), default="logged",
                        help="where to rerun: the run's logged device type (default), or cpu, cuda, auto")
    parser.add_argument("--epochs", type=int, help="rerun only this many epochs (and compare those)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest difference that still agrees when bit-identity is not expected (default 1e-4)")
    parser.add_argument("--allow-data-change", action="store_true", help="rerun even if the data's fingerprint differs")
    parser.add_argument("--allow-code-change", action="store_true",
                        help="rerun even if the run's own model, data or metric code (logged under code/) changed")


SHOWN_DIFFERENCES = 5  # disagreeing epochs printed; the artifact has them all


def print_side_by_side(result) -> None:
    """One line per shown epoch (the first, the last and the disagreeing ones), a cell per metric:
    its value when both runs agree, else original -> reproduced."""
    by_epoch: dict[int, list[tuple[str, float, float]]] = {}
    for epoch, key, old, new in result.rows:
        by_epoch.setdefault(epoch, []).append((key, old, new))

    def agrees(old: float, new: float) -> bool:
        return old == new if result.exact else abs(old - new) <= result.tolerance

    differing = [e for e, cells in by_epoch.items() if not all(agrees(old, new) for _, old, new in cells)]
    shown = sorted({min(by_epoch), max(by_epoch), *differing[:SHOWN_DIFFERENCES]})
    keys = [key for key, _, _ in by_epoch[shown[0]]]
    print((f"{'epoch':>5}  " + "  ".join(f"{key:<24}" for key in keys)).rstrip())
    for epoch in shown:
        cells = [f"{old:.6g}" if agrees(old, new) else f"{old:.6g} -> {new:.6g}" for _, old, new in by_epoch[epoch]]
        line = f"{epoch:>5}  " + "  ".join(f"{cell:<24}" for cell in cells)
        print(line + "  <- differs" if epoch in differing else line.rstrip())
    if len(differing) > SHOWN_DIFFERENCES:
        print(f"       ... and {len(differing) - SHOWN_DIFFERENCES} more epochs that differ")


def main(args: argparse.Namespace) -> int:
    from core.reproduce import TABLE_ARTIFACT, reproduce  # torch loads here, not for --help or a usage error

    signals.install_signal_handlers()
    result = reproduce(args.run_id, args.epochs, args.tolerance, args.allow_data_change, args.allow_code_change,
                       args.device)
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    print_side_by_side(result)
    expectation = "bit-identical" if result.exact else f"within {result.tolerance:g}"
    if result.agree:
        print(f"agree ({expectation}): reproduced as run {result.run_id}")
        print(f"  every epoch: artifact {TABLE_ARTIFACT} of run {result.run_id}")
        return 0
    print(f"DIFFER ({expectation} expected): first at epoch {result.first_divergence}; new run {result.run_id}")
    print(f"  every epoch: artifact {TABLE_ARTIFACT} of run {result.run_id}")
    return 1
