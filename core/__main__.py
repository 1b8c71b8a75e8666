"""`python -m core <verb>`: argument parsing and exit codes only.

Each verb lives in core/commands/<verb>.py with `HELP`, `add_arguments(parser)`
and `main(args) -> int`. A `UserError` becomes one line on stderr and exit 2;
Ctrl-C or SIGTERM one line and exit 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from core.errors import UserError
from core.signals import exit_code

VERBS = ["run", "train", "study", "compare", "reproduce", "evaluate", "visdom", "ui", "keys"]


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Experiment-tracking research scaffold.")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True
    for verb in VERBS:
        module = importlib.import_module(f"core.commands.{verb}")
        sub = verbs.add_parser(verb, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(command=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "visdom", "optuna", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.command.main(args) or 0)
    except UserError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: open runs are already marked KILLED
        sys.stderr.write(f"stopped by {stop or 'Ctrl-C'}; finished work is kept\n")
        return exit_code(stop)


if __name__ == "__main__":
    sys.exit(main())
