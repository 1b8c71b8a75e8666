"""`python -m core evaluate RUN_ID`: reload a run's logged weights and re-evaluate them on the test set."""

from __future__ import annotations

import argparse
import math

HELP = "reload a run's logged weights and re-evaluate them on the test set"
EXAMPLES = ["python -m core evaluate RUN_ID     (the run id that train or study printed)",
            "python -m core evaluate RUN_ID --allow-code-change"]
TOLERANCE = 1e-6


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id")
    parser.add_argument("--device", choices=("logged", "cpu", "cuda", "auto"), default="logged",
                        help="where to rerun: the run's logged device type (default), or cpu, cuda, auto")
    parser.add_argument("--allow-code-change", action="store_true",
                        help="evaluate even if the run's own model, data or metric code (logged under code/) changed")


def main(args: argparse.Namespace) -> int:
    from core.reproduce import evaluate_logged_model  # torch loads here, not for --help or a usage error
    from core.tracking import mlflow_store

    mlflow_store.reading_only()  # an archived, read-only store can be evaluated

    logged, now = evaluate_logged_model(args.run_id, args.allow_code_change, args.device)
    print(f"{'metric':<16} {'logged':>12} {'now':>12}")
    agree = True
    for key in now:  # test_loss and the task's metrics: test_acc, test_rmse, ...
        same = math.isclose(logged[key], now[key], rel_tol=TOLERANCE, abs_tol=TOLERANCE)
        agree &= same
        print(f"{key:<16} {logged[key]:>12.6f} {now[key]:>12.6f}{'' if same else '  <- differs'}")
    print("match" if agree else "DIFFER")
    return 0 if agree else 1
