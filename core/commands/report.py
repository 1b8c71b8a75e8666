"""`python -m core report NAME [--open]`: the report page of a study, a nested estimate or a comparison, written
from the store (the newest of them by that name)."""

from __future__ import annotations

import argparse

from core.errors import UserError

HELP = "write the report page of a study or comparison (HTML and Markdown, under mlruns/reports/) and print its path"
EXAMPLES = ["python -m core report digits_mlp", "python -m core report digits_mlp --open",
            "python -m core report overfitting"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="NAME",
                        help="a study's name (its nested estimate's too), or a comparison's: its MLflow experiment")
    parser.add_argument("--open", action="store_true", help="open the page in the web browser as well")
    parser.add_argument("--storage", metavar="URL",
                        help="the study's Optuna storage with its password, when the server asks for one that "
                             "PGPASSWORD or ~/.pgpass do not give (runs keep the URL with the password hidden)")


# The page of each kind of group run (core.runs.logged.GROUP_KINDS): (module, function(name, run_id) -> path)
WRITERS = {"study": ("core.study.page", "write_study_report"), "nested": ("core.study.page", "write_nested_report"),
           "comparison": ("core.compare_page", "write_comparison_report")}


def main(args: argparse.Namespace) -> int:
    import importlib

    from core.hostile_values import check_printable
    from core.runs.logged import newest_group

    check_printable("NAME", args.name)
    if args.storage:
        from core.study.storage import remember

        remember(args.storage)  # the page opens the URL its run logged: this one stands for it
    found = newest_group(args.name)
    if found is None:
        raise UserError(f"no study or comparison named {args.name!r} in this store (python -m core ui lists them)")
    module, function = WRITERS[found.tags["kind"]]
    path = getattr(importlib.import_module(module), function)(args.name, found.id)
    print(path)
    print(f"  {path.with_suffix('.md')} (the same in Markdown); both logged on run {found.id}")
    if args.open:
        import webbrowser

        if not webbrowser.open(path.resolve().as_uri()):
            print("  no web browser to open it here: open the file above in one")
    return 0
