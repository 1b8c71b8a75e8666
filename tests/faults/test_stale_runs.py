"""Runs left RUNNING by dead processes are marked FAILED at start; runs of live processes are left alone."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from core.tracking import mlflow_store
from tests.helpers import start_run


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_only_dead_processes_runs_are_failed():
    dead = start_run("stale", "left by a dead process", {"pid": str(dead_pid())})
    alive = start_run("stale", "ours, still running")
    other_host = start_run("stale", "another machine's", {"host": socket.gethostname() + "-other",
                                                                       "pid": str(dead_pid())})
    swept = mlflow_store.fail_stale_runs()
    client = mlflow_store.client()
    assert swept == [dead]
    assert client.get_run(dead).info.status == "FAILED"
    assert "died" in client.get_run(dead).data.tags["error"]
    assert client.get_run(alive).info.status == "RUNNING"
    assert client.get_run(other_host).info.status == "RUNNING"
    assert client.get_run(alive).data.tags["pid"] == str(os.getpid())


@pytest.mark.slow
def test_train_command_sweeps_stale_runs_at_start(tmp_path):
    from tests.helpers import run_cli, tiny_overrides

    stale = start_run("train", "left by a dead process", {"pid": str(dead_pid())})
    result = run_cli("train", *tiny_overrides(**{"train.epochs": 2}))
    assert result.returncode == 0, result.stderr
    assert mlflow_store.client().get_run(stale).info.status == "FAILED"


@pytest.mark.slow
def test_study_command_sweeps_stale_runs_of_every_experiment(tmp_path):
    from tests.helpers import run_cli, tiny_study_spec

    stale = start_run("another experiment", "left by a dead process", {"pid": str(dead_pid())})
    result = run_cli("study", str(tiny_study_spec(tmp_path, trials=1)))
    assert result.returncode == 0, result.stderr
    assert mlflow_store.client().get_run(stale).info.status == "FAILED"
