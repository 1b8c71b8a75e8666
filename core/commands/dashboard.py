"""`python -m core dashboard [--port P] [--storage URL]`: optuna-dashboard on the project's Optuna storage."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import servers, signals
from core.errors import UserError
from core.study import default_storage

HELP = "start optuna-dashboard on the project's Optuna storage (bound to 127.0.0.1): studies live, trial by trial"
EXAMPLES = ["python -m core dashboard", "python -m core dashboard --port 8081",
            "python -m core dashboard --storage sqlite:///optuna.db"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    servers.add_address_arguments(parser, 8080)
    servers.add_stop_argument(parser, "optuna-dashboard")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage: a journal file, sqlite:///..., or postgresql://... "
                             "(default: optuna.journal in the nearest mlruns/ from here up)")


def dashboard_command(storage: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "core.dashboard_server", storage, host, str(port)]


def main(args: argparse.Namespace) -> int:
    from core.study.storage import check_storage, is_rdb

    if args.stop:
        return servers.print_stopped(servers.stop_recorded(servers.record_file("dashboard"), "core dashboard"),
                                     "optuna-dashboard")
    signals.install_signal_handlers()  # SIGTERM stops the server too, instead of orphaning it
    args.storage = args.storage or default_storage()
    servers.check_port(args.port, args.host)
    check_storage(args.storage)
    if not is_rdb(args.storage) and not Path(args.storage).exists():
        raise UserError(f"no Optuna storage at {args.storage}: run a study first (make run, python -m core study)")
    servers.warn_if_exposed(args.host, "optuna-dashboard")
    base = servers.url_for(args.host, args.port)

    def ready() -> None:
        print(f"Optuna dashboard: {base}/dashboard", flush=True)
        print("  each trial's MLflow run is its user attribute mlflow_run_id (python -m core ui to open it)",
              flush=True)
        print("Ctrl-C stops it.", flush=True)

    with servers.recorded("dashboard", args.port):  # for `dashboard --stop` (make stop)
        servers.serve(dashboard_command(args.storage, args.host, args.port), base, "/api/studies",
                      "optuna-dashboard", ready)
    return 0
