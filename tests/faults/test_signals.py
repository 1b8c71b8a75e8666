"""SIGTERM and Ctrl-C: the current run ends KILLED, the trial FAIL, the parent run KILLED; resume is clean."""

from __future__ import annotations

import signal
import time

import optuna
import pytest

from tests.helpers import TINY_CONFIG, all_runs, load_study, run_cli, start_cli, tiny_study_spec

pytestmark = pytest.mark.slow


def wait_for_running_trial(name: str, process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            study = load_study(name)
            if any(t.state == optuna.trial.TrialState.RUNNING for t in study.trials) and any(
                    r.info.status == "RUNNING" and r.data.tags.get("trial_number") for r in all_runs(name)):
                return
        except Exception:
            pass  # storage not created yet
        time.sleep(0.2)
    raise AssertionError("no trial started running")


@pytest.mark.parametrize("sent", [signal.SIGTERM, signal.SIGINT])
def test_signal_kills_runs_and_study_resumes(tmp_path, sent):
    # Slow trials, so the signal lands during one.
    spec = tiny_study_spec(tmp_path, name="sig", trials=3,
                           config={**TINY_CONFIG,
                                   "data": {"name": "synthetic", "samples": 4000, "shape": [1, 16, 16],
                                            "num_classes": 4},
                                   "train": {"epochs": 40, "batch_size": 16}})
    process = start_cli("study", str(spec))
    wait_for_running_trial("sig", process)
    process.send_signal(sent)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + sent, stderr
    assert stderr.strip().splitlines()[-1].startswith("stopped by"), stderr

    runs = all_runs("sig")
    assert not [r for r in runs if r.info.status == "RUNNING"], stderr
    trial_runs = [r for r in runs if r.data.tags.get("trial_number")]
    parent = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert [r.info.status for r in trial_runs] == ["KILLED"], stderr
    assert parent[0].info.status == "KILLED", stderr
    states = optuna.trial.TrialState
    trials = load_study("sig").trials  # the stopped trial is FAIL, its parameters queued again
    assert [t.state for t in trials] == [states.FAIL, states.WAITING], stderr
    assert trials[1].user_attrs["retry_of"] == 0

    # Resume with quick trials: exactly the budget, the same parent run, now FINISHED.
    quick = tiny_study_spec(tmp_path, name="sig", trials=3)
    finished = run_cli("study", str(quick))
    assert finished.returncode == 0, finished.stderr
    assert "resuming study sig: 0 finished, trial 0 retried" in finished.stderr
    trials = load_study("sig").trials
    assert [t.state for t in trials].count(optuna.trial.TrialState.COMPLETE) == 3
    assert trials[1].params == trials[0].params  # the retry
    runs = all_runs("sig")
    parents = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert not [r for r in runs if r.info.status == "RUNNING"]
