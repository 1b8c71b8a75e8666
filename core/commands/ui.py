"""`python -m core ui [--port P] [--host H]`: the MLflow UI on the project's store."""

from __future__ import annotations

import argparse
import os
import sys

from core import servers, signals
from core.errors import UserError
from core.tracking import mlflow_store

HELP = "start the MLflow UI on the project's store (bound to 127.0.0.1)"
EXAMPLES = ["python -m core ui", "python -m core ui --port 5001",
            "MLFLOW_TRACKING_URI=sqlite:///other/mlflow.db python -m core ui"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    servers.add_address_arguments(parser, 5000)
    servers.add_stop_argument(parser, "MLflow UI")


# Runs of a study (its parent and trials carry the tag `study`) or of a comparison (parent and remedies: `kind`).
LAST_WORK_FILTERS = ("tags.study LIKE '%'", "tags.kind = 'comparison'", "tags.kind = 'remedy'")


def last_experiment_id() -> str | None:
    """The experiment of the study or comparison that ran last in this store (its newest run), else the
    newest experiment; None for an empty store."""
    client = mlflow_store.client()
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    if not experiments:
        return None
    ids = [e.experiment_id for e in experiments]
    newest = [run for query in LAST_WORK_FILTERS
              for run in client.search_runs(ids, query, max_results=1, order_by=["attributes.start_time DESC"])]
    if newest:
        return max(newest, key=lambda run: run.info.start_time).info.experiment_id
    return max(experiments, key=lambda e: e.last_update_time or e.creation_time or 0).experiment_id


LAYOUT = "workflowType=machine_learning"  # MLflow 3's "Model training" layout, not GenAI (docs/studies.md: Browsing)


def last_experiment_url(base: str) -> str:
    """The runs table of the last study or comparison, in the UI's "Model training" view."""
    from core.runs import views

    experiment = last_experiment_id()
    if experiment is None:
        return base
    view = f"&{views.URL_KEY}={views.STUDY_VIEW}" if views.has_view(experiment, views.STUDY_VIEW) else ""
    return f"{base}/#/experiments/{experiment}/runs?{LAYOUT}{view}"


def best_trial_url(base: str) -> str | None:
    """The run page of the best trial of the last study in the last experiment (its parent run's tag
    best_run_id), or None when that is no study or no trial completed."""
    experiment = last_experiment_id()
    if experiment is None:
        return None
    parents = mlflow_store.client().search_runs([experiment], "tags.kind = 'study'", max_results=1,
                                                 order_by=["attributes.start_time DESC"])
    run_id = parents[0].data.tags.get("best_run_id") if parents else None
    return f"{base}/#/experiments/{experiment}/runs/{run_id}?{LAYOUT}" if run_id else None


def ui_command(uri: str, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port),
            "--workers", "1"]


def ui_env() -> dict[str, str]:
    """MLflow's job runner (GenAI jobs: trace rollups, judges) is off unless asked for: ~8 processes nobody uses."""
    return {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": os.environ.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
                                                                               "false")}


def main(args: argparse.Namespace) -> int:
    if args.stop:
        return servers.print_stopped(servers.stop_recorded(servers.record_file("ui"), "core ui"), "MLflow UI")
    signals.install_signal_handlers()  # SIGTERM stops `mlflow ui` too, instead of orphaning it
    servers.check_port(args.port, args.host)
    uri = mlflow_store.tracking_uri()
    path = mlflow_store.sqlite_path(uri)
    if path is not None and not path.exists():
        raise UserError(f"no MLflow store at {path}: run `make run` or `python -m core train` first")
    servers.warn_if_exposed(args.host, "the MLflow UI")
    base = servers.url_for(args.host, args.port)

    def ready() -> None:
        print(f"MLflow UI: {last_experiment_url(base)}", flush=True)
        best = best_trial_url(base)
        if best:
            print(f"  best trial: {best}", flush=True)
        print(f"  every experiment: {base}/#/experiments?{LAYOUT}", flush=True)
        print("Ctrl-C stops it.", flush=True)

    with servers.recorded("ui", args.port):  # for `ui --stop` (make stop)
        servers.serve(ui_command(uri, args.host, args.port), base, "/health", "the MLflow UI", ready, env=ui_env())
    return 0
