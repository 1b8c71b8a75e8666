"""A PostgreSQL restart under the Optuna storage while a study runs (issue 25, item 4).

A real cluster on loopback, started and stopped with pg_ctl (fast shutdown: sessions are cut, as in a
restart). A short restart is waited out and the study completes; a server kept down past the window
(CORE_STORAGE_OUTAGE_SECONDS, a few seconds here) ends it with one line, exit 3, and no run RUNNING.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from tests.helpers import TINY_CONFIG, mlflow_client, start_cli, tiny_study_spec
from tests.postgres import throwaway_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def cluster():
    with throwaway_cluster("optuna") as server:
        yield server


def wait_for_trial_running(storage: str, name: str, number: int, process, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    reader = optuna.storages.RDBStorage(storage)  # one connection for every look
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1][-3000:]
            try:
                trials = optuna.load_study(study_name=name, storage=reader).get_trials(deepcopy=False)
            except KeyError:
                trials = []
            if len(trials) > number and trials[number].state == optuna.trial.TrialState.RUNNING:
                return
            time.sleep(0.5)
    finally:
        reader.engine.dispose()  # no session of ours is left for the server's shutdown to wait on
    raise AssertionError(f"trial {number} never ran")


def slow_spec(folder: Path, name: str) -> Path:
    """Trials of a second or more each, so the server goes down inside one (tiny ones end before it can)."""
    data = {"name": "synthetic", "samples": 2000, "shape": [1, 8, 8], "num_classes": 4}
    return tiny_study_spec(folder, name=name, trials=4, config={**TINY_CONFIG, "data": data})


def no_run_running(experiment: str) -> Counter:
    client = mlflow_client()
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], max_results=100)
    statuses = Counter(r.info.status for r in runs)
    assert "RUNNING" not in statuses, statuses
    return statuses


def test_a_short_restart_is_waited_out_and_the_study_completes(cluster, tmp_path):
    storage = f"postgresql://postgres@127.0.0.1:{cluster.port}/optuna"
    spec = slow_spec(tmp_path, "restart")
    study = start_cli("study", str(spec), "--storage", storage, "train.epochs=40", cwd=tmp_path,
                      CORE_STORAGE_OUTAGE_SECONDS="60")
    wait_for_trial_running(storage, "restart", 1, study)
    cluster.stop()
    time.sleep(3)
    cluster.start()
    _, stderr = study.communicate(timeout=400)
    assert study.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    trials = optuna.load_study(study_name="restart", storage=storage).trials
    assert Counter(t.state for t in trials) == {optuna.trial.TrialState.COMPLETE: 4}
    assert no_run_running("restart") == {"FINISHED": 5}  # the parent and 4 trials


def test_a_server_down_past_the_window_ends_the_study_in_one_line(cluster, tmp_path):
    storage = f"postgresql://postgres@127.0.0.1:{cluster.port}/optuna"
    spec = slow_spec(tmp_path, "down")
    arguments = ["study", str(spec), "--storage", storage, "train.epochs=40"]
    study = start_cli(*arguments, cwd=tmp_path, CORE_STORAGE_OUTAGE_SECONDS="3")
    wait_for_trial_running(storage, "down", 1, study)
    cluster.stop()
    _, stderr = study.communicate(timeout=300)
    assert study.returncode == 3, stderr[-3000:]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not answer for 3 s" in errors[0], stderr[-3000:]
    assert stderr.rstrip().splitlines()[-1] == errors[0]
    # the parent FAILED; the trial's run too, unless the server went down after it FINISHED and before Optuna
    # was told (then the trial is RUNNING in Optuna, and the rerun fails and retries it)
    assert no_run_running("down")["FAILED"] >= 1

    cluster.start()  # nothing torn: the same command goes on and completes the study
    again = start_cli(*arguments, cwd=tmp_path)
    _, stderr = again.communicate(timeout=400)
    assert again.returncode == 0, stderr[-3000:]
    trials = optuna.load_study(study_name="down", storage=storage).trials
    assert Counter(t.state for t in trials)[optuna.trial.TrialState.COMPLETE] == 4
    no_run_running("down")
