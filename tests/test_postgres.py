"""Workers on 'several machines': PostgreSQL for Optuna and an MLflow server on the same PostgreSQL.

A real PostgreSQL starts on loopback in a temporary folder (as the `postgres`
user when the tests run as root), then two workers run as separate processes.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import optuna
import pytest

from tests.helpers import cli_env, free_port, tiny_study_spec
from tests.postgres import throwaway_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def postgres():
    with throwaway_cluster("optuna", "mlflow") as cluster:
        yield cluster.url


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    port = free_port()
    log = open(tmp_path / "mlflow-server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"{postgres}/mlflow",
                               "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
                               "--port", str(port), "--workers", "1"],
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    from core.servers import wait_until_answers

    try:
        started = wait_until_answers(f"{url}/health", timeout=120, process=server)
        assert started, (tmp_path / "mlflow-server.log").read_text()[-3000:]
        yield url
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def test_two_workers_on_postgres_lose_and_duplicate_nothing(postgres, mlflow_server, tmp_path):
    # a password the server does not ask for (trust): it must show in no run, page or printed line
    storage = f"{postgres}/optuna".replace("postgres@", "postgres:hush-hush@")
    spec = tiny_study_spec(tmp_path, name="shared", trials=8)
    env = cli_env(MLFLOW_TRACKING_URI=mlflow_server)
    command = [sys.executable, "-m", "core", "study", str(spec), "--storage", storage]
    # The schemas are made once before the workers start, as docs/studies.md tells.
    first = subprocess.run(command + ["--trials", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    workers = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for _ in range(2)]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=600)
        assert worker.returncode == 0, stderr
        assert "hush-hush" not in stdout + stderr and "postgres:***@" in stdout

    trials = optuna.load_study(study_name="shared", storage=storage).trials
    assert Counter(t.state for t in trials) == {optuna.trial.TrialState.COMPLETE: 8}
    assert len({t.user_attrs["pid"] for t in trials}) >= 2

    import mlflow

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("shared")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if r.data.tags.get("trial_number")]
    assert Counter(r.info.status for r in runs) == {"FINISHED": 9}
    assert sorted(int(r.data.tags["trial_number"]) for r in trial_runs) == list(range(8))
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {r.info.run_id for r in trial_runs}
    assert not [r for r in runs if "hush-hush" in str(r.data.tags) + str(r.data.params)]
    page = subprocess.run([sys.executable, "-m", "core", "report", "shared"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # reopens the storage its run logged
    assert page.returncode == 0, page.stderr
    assert "hush-hush" not in (tmp_path / "mlruns" / "reports" / "shared.html").read_text()
