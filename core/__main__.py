"""`python -m core <verb>`: argument parsing and exit codes only.

Each verb lives in core/commands/<verb>.py with `HELP`, `add_arguments(parser)`,
`main(args) -> int`, `EXAMPLES` (the end of its --help) and, for verbs that take
them, `OVERRIDES`: the argument that collects `key=value` items, which may stand
anywhere on the line, before or after the options. A `UserError` becomes one line
on stderr and exit 2; an `OutageError` (a store or disk failed), or any error a full disk
caused, one line and exit 3; Ctrl-C or SIGTERM one line and exit 128 + the signal's number.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from core.errors import OutageError, UserError
from core.signals import exit_code, stop_name

VERBS = ["run", "train", "study", "launch", "compare", "report", "reproduce", "evaluate", "visdom", "ui", "dashboard",
         "keys"]


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
        sub = verbs.add_parser(verb, help=module.HELP, description=module.HELP,
                               epilog="examples:\n" + "\n".join(f"  {line}" for line in module.EXAMPLES),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(command=module)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse gives a positional list only the items before the first option; the `key=value` items
    after the options come back unrecognised and join the verb's overrides here."""
    args, extra = parser.parse_known_args(argv)
    overrides = [item for item in extra if "=" in item and not item.startswith("-")]
    unknown = [item for item in extra if item not in overrides]
    dest = getattr(getattr(args, "command", None), "OVERRIDES", None)
    if unknown or (overrides and dest is None):
        parser.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        setattr(args, dest, [*getattr(args, dest), *overrides])
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "visdom", "optuna", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parse_args(build_parser(), argv)
    try:
        return int(args.command.main(args) or 0)
    except UserError as error:
        sys.stderr.write(f"error: {' '.join(str(error).split())}\n")  # one line, whatever the message held
        return 2
    except OutageError as error:
        sys.stderr.write(f"error: {' '.join(str(error).split())}\n")
        return 3
    except Exception as error:
        from core.outages import outage_behind

        outage = outage_behind(error)  # a full disk met outside a run (in a run it is an OutageError already)
        if outage is not None:
            sys.stderr.write(f"error: {' '.join(str(outage).split())}\n")
            return 3
        answer = _database_answer(error)
        if answer is None:
            raise
        sys.stderr.write(f"error: the storage's database answered: {' '.join(answer.split())}\n")
        return 1
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: open runs are already marked KILLED
        # (an exception is always true, and a bare KeyboardInterrupt's text is empty: name the signal instead)
        sys.stderr.write(f"stopped by {stop_name(stop)}; finished work is kept\n")
        return exit_code(stop)


def _database_answer(error: BaseException) -> str | None:
    """An error the storage's database server answered with (a lock timeout, a constraint), if one is behind
    `error`; only a study that loaded the storage can have one."""
    if "core.study.storage" not in sys.modules:
        return None
    from core.study.storage import database_answer

    return database_answer(error)


if __name__ == "__main__":
    sys.exit(main())
