"""4 workers x 25 short trials on the default one-machine storage: nothing locked, lost or duplicated."""

from __future__ import annotations

from collections import Counter

import optuna
import pytest

from tests.helpers import all_runs, load_study, run_cli, tiny_study_spec

pytestmark = pytest.mark.slow


def test_four_workers_hundred_trials(tmp_path):
    spec = tiny_study_spec(tmp_path, name="busy", trials=100,
                           config={"data": {"name": "synthetic", "samples": 120, "shape": [1, 4, 4], "num_classes": 3},
                                   "model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 1, "batch_size": 32},
                                   "device": "cpu", "track": {"visdom": "off", "log_model": False, "figures": False}})
    result = run_cli("study", str(spec), "--workers", "4", timeout=900)
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr

    trials = load_study("busy").trials
    failures = [t.user_attrs.get("fail_reason") for t in trials if t.state != optuna.trial.TrialState.COMPLETE]
    states = Counter(t.state for t in trials)
    assert states == {optuna.trial.TrialState.COMPLETE: 100}, (failures, result.stderr[-3000:])
    assert len({t.user_attrs["pid"] for t in trials}) == 4  # every worker took trials

    runs = [r for r in all_runs("busy") if r.data.tags.get("trial_number")]
    assert Counter(r.info.status for r in runs) == {"FINISHED": 100}
    assert sorted(int(r.data.tags["trial_number"]) for r in runs) == list(range(100))
    assert {t.user_attrs["mlflow_run_id"] for t in trials} == {r.info.run_id for r in runs}
