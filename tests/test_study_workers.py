"""Parallel workers: exactly the budget, and a worker killed with SIGKILL costs nothing but its trial."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import optuna
import pytest

from tests.helpers import TINY_CONFIG, all_runs, load_study, run_cli, start_cli, tiny_study_spec

pytestmark = pytest.mark.slow
SLOW_TRIALS = {**TINY_CONFIG, "data": {"name": "synthetic", "samples": 3000, "shape": [1, 16, 16], "num_classes": 4},
               "train": {"epochs": 6, "batch_size": 16}}
PAIR_TRIALS = {**SLOW_TRIALS, "train": {"epochs": 20, "batch_size": 16}}


def check_no_loss_no_duplicate(name: str, budget: int) -> list:
    trials = load_study(name).trials
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    assert len(finished) == budget
    runs = [r for r in all_runs(name) if r.data.tags.get("trial_number")]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    for trial in finished:
        mine = [r for r in runs if r.data.tags["trial_number"] == str(trial.number)]
        assert [r.info.status for r in mine] == ["FINISHED"]
        assert mine[0].info.run_id == trial.user_attrs["mlflow_run_id"]
    return trials


def test_two_workers_finish_exactly_the_budget(tmp_path):
    # Trials of about 2 s: the second worker starts well before the first could take the whole budget.
    spec = tiny_study_spec(tmp_path, name="pair", trials=6, config=PAIR_TRIALS)
    result = run_cli("study", str(spec), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = check_no_loss_no_duplicate("pair", 6)
    assert len(trials) == 6 and len({t.user_attrs["pid"] for t in trials}) == 2


def test_kill_9_of_one_worker_then_rerun(tmp_path):
    spec = tiny_study_spec(tmp_path, name="killed", trials=4, config=SLOW_TRIALS)
    process = start_cli("study", str(spec), "--workers", "2", cwd=tmp_path)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            running = [t for t in load_study("killed").trials if t.state == optuna.trial.TrialState.RUNNING
                       and "mlflow_run_id" in t.user_attrs]
        except Exception:
            continue  # the study does not exist yet
        if running:
            victim = running[0]
    assert victim is not None, "no trial started"
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    process.communicate(timeout=300)
    assert process.returncode != 0  # a worker died: the command says so

    rerun = run_cli("study", str(spec), "--workers", "2", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    trials = check_no_loss_no_duplicate("killed", 4)
    killed = trials[victim.number]
    assert killed.state == optuna.trial.TrialState.FAIL
    killed_run = [r for r in all_runs("killed") if r.info.run_id == victim.user_attrs["mlflow_run_id"]][0]
    assert killed_run.info.status == "FAILED"
    retried = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert retried and retried[0].params == victim.params  # its parameters were tried again
    assert Counter(r.info.status for r in all_runs("killed") if r.data.tags.get("kind") == "study") == {"FINISHED": 1}


def test_two_workers_stop_together_by_the_patience_rule(tmp_path):
    # Accuracy never improves by 1.0, so the rule holds once 4 trials have finished (the first sets the best).
    # Trials of about 2 s: both workers are running trials when it fires.
    budget = {"trials": 20, "patience": 3, "min_delta": 1.0}
    spec = tiny_study_spec(tmp_path, name="stop-pair", config=PAIR_TRIALS, budget=budget)
    result = run_cli("study", str(spec), "--workers", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exited with code" not in result.stderr  # both workers exited 0
    assert "stopped by the patience rule: " in result.stdout
    trials = load_study("stop-pair").trials
    assert {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert len({t.user_attrs["pid"] for t in trials}) == 2
    fired = sorted(t.datetime_complete for t in trials)[3]  # the 4th finished trial made the rule hold
    assert [t.number for t in trials if t.datetime_start > fired] == []  # nothing started after it
    assert len(trials) <= 4 + 1  # at most the other worker's running trial finished after it
    runs = all_runs("stop-pair")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert parent.info.status == "FINISHED" and parent.data.tags["stopped_by"] == "patience"
