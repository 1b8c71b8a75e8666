"""Helpers shared by tests: tiny specs, running the CLI, reading a store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "data": {"name": "synthetic", "samples": 200, "shape": [1, 8, 8], "num_classes": 4},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 3, "batch_size": 32},
    "device": "cpu",
    "track": {"visdom": "off", "log_model": False, "figures": False},
}


def tiny_study_spec(folder: Path, name: str = "tiny", trials: int = 3, **sections) -> Path:
    """A study spec that trains in a fraction of a second per trial."""
    spec = {"name": name, "seed": 0, "config": TINY_CONFIG,
            "space": {"optim.lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True}},
            "objective": {"metric": "val_acc", "direction": "maximize"},
            "sampler": {"name": "random"}, "pruner": {"name": "none"}, "budget": {"trials": trials}}
    spec.update(sections)
    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args], cwd=cwd, env=cli_env(**env), capture_output=True,
                          text=True, timeout=timeout)


def run_python(code: str, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter that imports this checkout, as the CLI's processes do."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=cli_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def start_cli(*args: str, cwd: Path | None = None, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "core", *args], cwd=cwd, env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mlflow_client():
    import mlflow

    return mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def all_runs(experiment: str | None = None) -> list:
    client = mlflow_client()
    experiments = [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    ids = [e.experiment_id for e in experiments if e is not None]
    return client.search_runs(ids, max_results=10_000) if ids else []


def load_study(name: str, storage: str = "mlruns/optuna.journal"):
    import optuna

    from core.study_storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage))
