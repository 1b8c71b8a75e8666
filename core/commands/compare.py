"""`python -m core compare SPEC [key=value ...]`: overfitting remedies on the same repeated K folds."""

from __future__ import annotations

import argparse
import shlex

from core import signals
from core.compare import Resumption, load_experiment, markdown_report, run_comparison

HELP = "compare overfitting remedies with repeated K-fold cross-validation (paired against the baseline)"
OVERRIDES = "overrides"  # key=value items after the options join these
EXAMPLES = ["python -m core compare experiments/overfitting.yaml",
            "python -m core compare experiments/overfitting.yaml seed=1 train.epochs=30",
            "python -m core compare experiments/overfitting.yaml --k 3 --repeats 1 --remedies l2,dropout"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="an experiment spec, e.g. experiments/overfitting.yaml")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the base config")
    parser.add_argument("--k", type=int, help="folds of each repeat (default: the spec's k)")
    parser.add_argument("--repeats", type=int, help="repeats of the K folds (default: the spec's repeats)")
    parser.add_argument("--remedies", type=names, metavar="a,b,...",
                        help="compare only these remedies of the spec with the baseline (default: all)")


def names(text: str) -> list[str]:
    """`l2,dropout` -> ["l2", "dropout"]"""
    return [name.strip() for name in text.split(",") if name.strip()]


def main(args: argparse.Namespace) -> int:
    spec = load_experiment(args.spec, args.overrides,
                           {"k": args.k, "repeats": args.repeats, "remedies": args.remedies})
    signals.install_signal_handlers()
    result = run_comparison(spec, progress=True, on_start=print_resumption)
    print(markdown_report(result))
    print(f"\ncomparison run: {result.parent_run_id} (experiment {spec.name!r}); browse: python -m core ui")
    if result.report_page:
        print(f"report page: {result.report_page}  (python -m core report {shlex.quote(spec.name)} --open)")
    return 0


def print_resumption(found: Resumption) -> None:
    """One line when a rerun goes on in an unfinished comparison, or when it does not because something changed."""
    if found.parent_run_id:
        print(f"resuming comparison {found.parent_run_id}: {found.finished_folds} of {found.total_folds} folds "
              f"finished there and are reused, {found.total_folds - found.finished_folds} to train", flush=True)
    elif found.changed:
        print(f"new comparison: the spec, overrides or code differ from the unfinished comparison {found.changed} "
              "(left as it is; rerun its own command to go on in it)", flush=True)
