"""An MLflow tracking server (`mlflow server` on loopback) that goes down mid-study and comes back.

A short outage is waited out and loses nothing; one longer than the window
(CORE_TRACKING_OUTAGE_SECONDS) ends the study with one line and exit 3, no trial
COMPLETE with values missing, and the same command finishes the study once the
server is back.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from core.names import epoch_key, step_key, summary_key
from core.servers import wait_until_answers
from core.study.spec import result_key
from tests.helpers import TINY_CONFIG, cli_env, free_port, load_study, tiny_study_spec

pytestmark = pytest.mark.slow

EPOCHS = 60  # a few seconds a trial: the outage starts early inside the first one, not at its end
TRIALS = 2


class Server:
    """`mlflow server` on one port over one SQLite store, stopped and started again by the test."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = folder / "server" / "mlflow.db"
        self.db.parent.mkdir()
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.folder / "mlflow-server.log", "a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.db}",
             "--artifacts-destination", str(self.db.parent / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # its own group: stopped with its workers
        log.close()
        assert wait_until_answers(f"{self.url}/health", timeout=180, process=self.process), self.log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)
        self.process = None

    def log(self) -> str:
        return (self.folder / "mlflow-server.log").read_text()[-3000:]

    def count(self, sql: str) -> int:
        """Read the server's store directly (not through the server, which may be down)."""
        with sqlite3.connect(self.db, timeout=30) as connection:
            return connection.execute(sql).fetchone()[0]


@pytest.fixture
def server(tmp_path):
    running = Server(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def slow_spec(folder: Path) -> Path:
    """Trials of a few seconds each, so the outage starts inside one."""
    return tiny_study_spec(folder, name="outage", trials=TRIALS,
                           config={**TINY_CONFIG,
                                   "data": {"name": "synthetic", "samples": 2000, "shape": [1, 8, 8],
                                            "num_classes": 4},
                                   "train": {"epochs": EPOCHS, "batch_size": 32}})


def start_study(spec: Path, server: Server, window: float) -> subprocess.Popen:
    # MLflow's own retries of one request (about 4 minutes by default) would hide an outage as short as this
    # test's; none here, as if the outage outlasted them: the window alone must carry the study through it.
    env = cli_env(MLFLOW_TRACKING_URI=server.url, CORE_TRACKING_OUTAGE_SECONDS=str(window),
                  MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    return subprocess.Popen([sys.executable, "-m", "core", "study", str(spec)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float) -> str:
    """The study's stderr once it ends; killed (and the test failed) if it does not end in time."""
    try:
        return process.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the study did not end in {timeout} s: {process.communicate()[1][-3000:]}") from None


def wait_inside_first_trial(server: Server, process: subprocess.Popen, timeout: float = 180) -> None:
    """Until the first trial's run has logged its first epochs (values go out about once a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            if server.count(f"SELECT count(*) FROM metrics WHERE key = '{epoch_key('val_acc')}'") >= 1:
                return
        except sqlite3.OperationalError:
            pass  # tables not made yet
        time.sleep(0.1)
    raise AssertionError("the first trial logged no epochs")


def trial_runs(server: Server) -> list:
    import mlflow

    client = mlflow.MlflowClient(server.url)
    experiment = client.get_experiment_by_name("outage")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def missing_values(client, run) -> list[str]:
    """What a COMPLETE trial's run lacks: an epoch of a per-epoch metric, a step loss, a summary metric."""
    missing = []
    epochs = int(run.data.tags.get("epochs_run", -1))
    for key in map(epoch_key, ("train_loss", "val_loss", "val_acc")):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        if steps != list(range(epochs)):
            missing.append(f"{key} at epochs {sorted(set(range(epochs)) - set(steps))} (logged {steps})")
    steps = [m.step for m in client.get_metric_history(run.info.run_id, step_key("train_loss"))]
    if len(steps) != len(set(steps)) or sorted(steps) != list(range(len(steps))) or not steps:
        missing.append(f"train_loss_step: {len(steps)} values, not one per step")
    keys = set(run.data.metrics)
    missing += [f"no {prefix}* metric" for prefix in (summary_key("final_"), summary_key("test_"))
                if not any(key.startswith(prefix) for key in keys)]
    if summary_key(result_key("val_acc")) not in keys:
        missing.append(summary_key(result_key("val_acc")))
    return missing


def check_store(server: Server) -> tuple[list, list]:
    """(trials, runs) after the study; every COMPLETE trial has a FINISHED run with all its values."""
    trials = load_study("outage").trials
    client, runs = trial_runs(server)
    by_id = {run.info.run_id: run for run in runs}
    for trial in trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            run = by_id[trial.user_attrs["mlflow_run_id"]]
            assert run.info.status == "FINISHED", (trial.number, run.info.status)
            assert not missing_values(client, run), (trial.number, missing_values(client, run))
    return trials, runs


def test_short_outage_is_waited_out_and_loses_nothing(server, tmp_path):
    process = start_study(slow_spec(tmp_path), server, window=300)
    wait_inside_first_trial(server, process)
    server.stop()
    time.sleep(5)  # down for 5 s plus the restart's own time
    server.start()
    stderr = finish(process, 400)
    assert process.returncode == 0, stderr

    trials, runs = check_store(server)
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * TRIALS, stderr
    assert not [r for r in runs if r.info.status != "FINISHED"], [(r.info.run_name, r.info.status) for r in runs]
    assert len(runs) == TRIALS + 1  # and the parent


def test_long_outage_ends_the_study_with_one_line_and_the_same_command_finishes_it(server, tmp_path):
    spec = slow_spec(tmp_path)
    process = start_study(spec, server, window=5)
    wait_inside_first_trial(server, process)
    server.stop()
    stderr = finish(process, 300)
    assert process.returncode == 3, stderr
    assert "Traceback" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and server.url in last, stderr

    server.start()
    trials, _ = check_store(server)
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert optuna.trial.TrialState.FAIL in [t.state for t in trials], stderr  # the trial cut off is retried

    again = subprocess.run([sys.executable, "-m", "core", "study", str(spec)], capture_output=True, text=True,
                           env=cli_env(MLFLOW_TRACKING_URI=server.url), timeout=400)
    assert again.returncode == 0, again.stderr
    trials, runs = check_store(server)
    assert [t.state for t in trials].count(optuna.trial.TrialState.COMPLETE) == TRIALS, again.stderr
    assert not [r for r in runs if r.info.status == "RUNNING"], [(r.info.run_name, r.info.status) for r in runs]
