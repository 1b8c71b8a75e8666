"""kill -9 of `compare` midway, then the same command: it goes on in the killed comparison, reuses the folds that
finished, trains only the missing ones, leaves no run RUNNING and ends with the uninterrupted run's table; a changed
override starts a new comparison and says so in one line."""

from __future__ import annotations

import csv
import io
import os
import signal
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from tests.helpers import TINY_CONFIG, all_runs, run_cli, start_cli

pytestmark = pytest.mark.slow

NAME = "killed compare"
FOLDS = 2 * 2 * 3  # remedies x repeats x k


def write_spec(folder) -> str:
    # Folds of a few tenths of a second, so the kill lands between the first and the last.
    config = {**TINY_CONFIG, "data": {**TINY_CONFIG["data"], "samples": 400},
              "train": {"epochs": 6, "batch_size": 32, "deterministic": True}}
    spec = {"name": NAME, "seed": 0, "k": 3, "repeats": 2, "config": config,
            "remedies": {"baseline": {}, "dropout": {"model.dropout": 0.5}}}
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def fold_runs() -> list:
    return [run for run in all_runs(NAME) if "fold" in run.data.tags]


def kill_after_finished_folds(process, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if sum(run.info.status == "FINISHED" for run in fold_runs()) >= count:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return
        except Exception:
            pass  # the store is not made yet
        time.sleep(0.05)
    raise AssertionError(f"{count} folds did not finish in {timeout} s")


def folds_under(parent: str) -> list:
    groups = {run.info.run_id for run in all_runs(NAME) if run.data.tags.get("mlflow.parentRunId") == parent}
    return [run for run in fold_runs() if run.data.tags["mlflow.parentRunId"] in groups]


def table_without_seconds(uri: str, parent: str) -> list[dict[str, str]]:
    """The comparison's CSV table, less the training seconds (measured, so never the same twice)."""
    folder = Path("download", parent)
    folder.mkdir(parents=True)
    path = mlflow.MlflowClient(uri).download_artifacts(parent, "comparison.csv", str(folder))
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    return [{key: value for key, value in row.items() if not key.startswith("seconds")} for row in rows]


def comparison_run(stdout: str) -> str:
    return stdout.split("comparison run: ")[1].split()[0]


def test_killed_comparison_goes_on_where_it_stopped_and_a_changed_one_starts_anew(tmp_path):
    spec = write_spec(tmp_path)
    process = start_cli("compare", spec)
    kill_after_finished_folds(process, 3)
    before = {run.info.run_id: run for run in fold_runs()}
    finished = {run_id for run_id, run in before.items() if run.info.status == "FINISHED"}
    assert 3 <= len(finished) < FOLDS
    [killed] = [run.info.run_id for run in all_runs(NAME) if run.data.tags.get("kind") == "comparison"]

    changed = run_cli("compare", spec, "train.epochs=1")  # another override: another comparison
    assert changed.returncode == 0, changed.stderr
    said = [line for line in changed.stdout.splitlines() if killed in line]
    assert len(said) == 1 and said[0].startswith("new comparison:"), changed.stdout
    assert comparison_run(changed.stdout) != killed and len(folds_under(comparison_run(changed.stdout))) == FOLDS

    resumed = run_cli("compare", spec)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming comparison {killed}: {len(finished)} of {FOLDS} folds" in resumed.stdout
    assert comparison_run(resumed.stdout) == killed
    under = folds_under(killed)
    trained_now = [run for run in under if run.info.run_id not in before]
    assert len(trained_now) == FOLDS - len(finished)  # only the missing folds were trained
    done = {run.info.run_id for run in under if run.info.status == "FINISHED"}
    assert finished <= done and len(done) == FOLDS  # the finished ones reused, under the same comparison
    runs = all_runs(NAME)
    assert not [run for run in runs if run.info.status == "RUNNING"]
    assert {run.info.status for run in runs if run.info.run_id == killed} == {"FINISHED"}
    assert "error" not in next(run for run in runs if run.info.run_id == killed).data.tags

    # The same comparison uninterrupted, in a store of its own: the same table (deterministic on CPU).
    clean_uri = f"sqlite:///{tmp_path}/clean/mlflow.db"
    clean = run_cli("compare", spec, MLFLOW_TRACKING_URI=clean_uri)
    assert clean.returncode == 0, clean.stderr
    assert table_without_seconds(clean_uri, comparison_run(clean.stdout)) == \
        table_without_seconds(os.environ["MLFLOW_TRACKING_URI"], killed)
