"""A worker on another machine is killed mid-trial: its heartbeat stops, and the next command fails and retries
its trial (issue 25, item 2).

The other machine is this one under another hostname (`unshare -u`, a UTS namespace: root only), so the
dead worker's pid means nothing to the sweep of dead workers of this host: only the heartbeat can tell.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter

import optuna
import pytest

from tests.conftest import need_service
from tests.faults.test_storage_restart import cluster  # noqa: F401 (a fixture)
from tests.helpers import cli_env, mlflow_client, run_cli, tiny_study_spec

FAST_HEARTBEAT = {"CORE_HEARTBEAT_SECONDS": "1", "CORE_HEARTBEAT_GRACE_SECONDS": "3"}


def can_pretend_another_host() -> bool:
    try:
        return subprocess.run(["unshare", "-u", "hostname", "other-host"], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def start_on_other_host(command: list[str], cwd) -> subprocess.Popen:
    """`command` in a process whose hostname is other-host (exec: the Popen's pid is the Python process)."""
    script = "hostname other-host && exec " + " ".join(f"'{part}'" for part in command)
    return subprocess.Popen(["unshare", "-u", "sh", "-c", script], cwd=cwd, env=cli_env(**FAST_HEARTBEAT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_second_trial_running(storage: str, name: str, process: subprocess.Popen, timeout: float = 240):
    """Trial 0 complete, trial 1 RUNNING with its MLflow run: the moment to kill its worker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()[-3000:]
        try:
            trials = optuna.load_study(study_name=name, storage=storage).trials
        except KeyError:  # the study is not created yet
            trials = []
        if len(trials) >= 2 and trials[0].state == optuna.trial.TrialState.COMPLETE \
                and trials[1].state == optuna.trial.TrialState.RUNNING and trials[1].user_attrs.get("mlflow_run_id"):
            return trials[1]
        time.sleep(0.2)
    raise AssertionError("the worker on the other host never reached its second trial")


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # study.ask outside the runner
def test_a_trial_beats_while_it_runs_and_the_thread_stops_with_it(tmp_path, monkeypatch):
    from core.study.heartbeat import beating
    from core.study.storage import open_storage

    monkeypatch.setenv("CORE_HEARTBEAT_SECONDS", "1")
    backend = open_storage(f"sqlite:///{tmp_path}/optuna.db")
    study = optuna.create_study(study_name="beats", storage=backend)
    trial = study.ask()
    beats = []
    with pytest.raises(RuntimeError), beating(backend, "beats", trial.number):
        with sqlite3.connect(tmp_path / "optuna.db") as db:
            for _ in range(3):
                time.sleep(1.1)
                beats.append(db.execute("SELECT heartbeat FROM trial_heartbeats").fetchall())
        raise RuntimeError("the trial failed")  # the thread stops on any way out
    assert all(len(rows) == 1 for rows in beats)
    assert len({rows[0] for rows in beats}) >= 2  # the one row is updated as the trial runs
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]


@pytest.mark.slow
def test_a_killed_worker_of_another_host_is_failed_by_its_heartbeat_and_retried(tmp_path):
    killed_worker_of_another_host_is_retried(f"sqlite:///{tmp_path}/optuna.db", tmp_path)


@pytest.mark.slow
@pytest.mark.postgres
def test_the_same_on_postgres(cluster, tmp_path):  # noqa: F811 (the fixture)
    killed_worker_of_another_host_is_retried(f"postgresql://postgres@127.0.0.1:{cluster.port}/optuna", tmp_path)


def killed_worker_of_another_host_is_retried(storage: str, tmp_path) -> None:
    need_service(can_pretend_another_host(), "unshare -u (a hostname of its own) needs root")
    spec = tiny_study_spec(tmp_path, name="remote", trials=3)
    arguments = ["study", str(spec), "--storage", storage, "train.epochs=150"]  # a few seconds per trial
    worker = start_on_other_host([sys.executable, "-m", "core", *arguments], tmp_path)
    try:
        dead = wait_for_second_trial_running(storage, "remote", worker)
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
    assert dead.user_attrs["host"] == "other-host"
    time.sleep(4)  # past the grace period: its last heartbeat is older than 3 s

    result = run_cli(*arguments, cwd=tmp_path, **FAST_HEARTBEAT)
    assert result.returncode == 0, result.stderr[-3000:]

    trials = optuna.load_study(study_name="remote", storage=storage).trials
    states = Counter(t.state for t in trials)
    assert states == {optuna.trial.TrialState.COMPLETE: 3, optuna.trial.TrialState.FAIL: 1}, states
    assert trials[dead.number].state == optuna.trial.TrialState.FAIL
    retries = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == dead.params
    assert "other-host" in retries[0].user_attrs["retry_reason"]

    client = mlflow_client()
    dead_run = client.get_run(dead.user_attrs["mlflow_run_id"])
    assert dead_run.info.status == "FAILED"
    assert "stopped beating" in dead_run.data.tags["error"]
    runs = client.search_runs([client.get_experiment_by_name("remote").experiment_id], max_results=100)
    assert "RUNNING" not in {r.info.status for r in runs}
