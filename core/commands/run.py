"""`python -m core run`: the main job (`make run`): the default study, watched live in Visdom."""

from __future__ import annotations

import argparse
import logging

from core import signals
from core.commands.study import add_study_options, print_outcome
from core.study import default_storage

HELP = "run the default study (studies/digits_mlp.yaml) with a Visdom server for the live view"
DEFAULT_SPEC = "studies/digits_mlp.yaml"
OVERRIDES = "overrides"  # key=value items after the options join these
EXAMPLES = ["python -m core run                      (what make run does)",
            "python -m core run --trials 10 train.epochs=5",
            "python -m core run --workers 2 --no-visdom"]
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the study's base config")
    parser.add_argument("--spec", default=DEFAULT_SPEC, help=f"study spec (default {DEFAULT_SPEC})")
    parser.add_argument("--no-visdom", action="store_true", help="do not start a Visdom server")
    add_study_options(parser)


def main(args: argparse.Namespace) -> int:
    from core.study.runner import run_study  # Optuna and torch load here, not for --help or a usage error
    from core.study.spec import load_spec

    spec = load_spec(args.spec, args.overrides, name=args.name, trials=args.trials, timeout=args.timeout)
    args.storage = args.storage or default_storage()
    signals.install_signal_handlers()
    if not args.no_visdom and spec.base.track.visdom != "off":
        from core.tracking.visdom_sink import env_url
        from core.visdom_server import ensure_server

        url = ensure_server()
        print(f"Visdom (live per-step loss): {env_url(url, spec.name)}", flush=True)
    outcome = run_study(spec, storage=args.storage, workers=args.workers, progress=True, gpus=args.gpus)
    print_outcome(outcome, spec.metrics, spec.base.track.visdom_url)
    return 1 if outcome.interrupted else 0
