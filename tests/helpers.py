"""Helpers shared by tests: tiny specs, running the CLI, reading a store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from core.config import Config

ROOT = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "data": {"name": "synthetic", "samples": 200, "shape": [1, 8, 8], "num_classes": 4},
    "model": {"name": "mlp", "hidden": [16]},
    "train": {"epochs": 3, "batch_size": 32},
    "device": "cpu",
    "track": {"visdom": "off", "log_model": False, "figures": False},
}


def tiny_flat(**overrides) -> dict:
    """TINY_CONFIG as dotted keys, with dotted-key overrides, e.g. tiny_flat(**{"train.epochs": 1})."""
    def flatten(node: dict, prefix: str = "") -> dict:
        flat = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return flat
    return {**flatten(TINY_CONFIG), **overrides}


def tiny_config(**overrides) -> Config:
    """The tiny config (well under a second of training), e.g. tiny_config(**{"data.samples": 300})."""
    return Config().apply(tiny_flat(**overrides)).validate()


def tiny_overrides(**overrides) -> list[str]:
    """The same config as the CLI's key=value arguments."""
    as_text = lambda value: str(value).lower() if isinstance(value, bool) else str(value)  # noqa: E731
    return [f"{key}={as_text(value)}" for key, value in tiny_flat(**overrides).items()]


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


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for tests and benchmarks that start servers)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


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

    from core.study.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage))


def start_run(experiment: str, name: str, tags: dict[str, str] | None = None) -> str:
    """A RUNNING run made as another process would leave it (core.runs.open_run is the library's only way)."""
    from core.tracking import mlflow_store

    client = mlflow_store.client()
    return client.create_run(mlflow_store.experiment_id(experiment), run_name=name,
                             tags={**mlflow_store.owner_tags(), **(tags or {})}).info.run_id


def end_run(run_id: str, status: str) -> None:
    from core.tracking import mlflow_store

    if status == "KILLED":
        mlflow_store.drop_pooled_connections()
    mlflow_store.client().set_terminated(run_id, status=status)
