"""A full disk under the store (MLflow's SQLite, artifacts, the Optuna journal, checkpoints, plots).

The store folder `mlruns/` is a small tmpfs this test mounts, so it needs root: elsewhere it skips with the
reason, and under CI (CORE_REQUIRE_SERVICES=1) that skip fails. Wanted: one line naming where, exit code 3,
no run left RUNNING, a readable journal, and the same command finishing the study once space is freed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from core.names import summary_key
from tests.conftest import need_service
from tests.helpers import TINY_CONFIG, all_runs, load_study, mlflow_client, run_cli, start_cli, tiny_study_spec

pytestmark = pytest.mark.slow

TRIALS = 8


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder`, unmounted at the end."""
    folder.mkdir(parents=True)
    if os.geteuid() != 0:
        need_service(False, "mounting a tmpfs as the store folder needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    need_service(mounted.returncode == 0, f"cannot mount a tmpfs on {folder}: {' '.join(mounted.stderr.split())}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> Path:
    """A ballast file that takes every free byte of `folder`'s file system."""
    ballast = folder / "ballast"
    chunk = b"\xff" * (64 << 10)
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return ballast


def complete_trials(journal: Path) -> int:
    if not journal.is_file():
        return 0
    return journal.read_bytes().count(b'"state":1,')  # a trial told COMPLETE (Optuna's journal record)


def running_runs(store: Path) -> list[str]:
    """Runs left RUNNING, read straight from the SQLite file (read-only: the disk may still be full)."""
    with contextlib.closing(sqlite3.connect(f"file:{store / 'mlflow.db'}?mode=ro", uri=True)) as db:
        return [name for (name,) in db.execute("SELECT name FROM runs WHERE status = 'RUNNING'")]


def error_lines(stderr: str, study: str) -> list[str]:
    """stderr without the progress bar's frames (tqdm redraws `study NAME: ...` with carriage returns) and the
    notice that a rerun resumes the study."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(f"study {study}:")
            and f"resuming study {study}:" not in line]


def assert_outage(result, store: Path, study: str) -> str:
    lines = error_lines(result.stderr, study)
    assert result.returncode == 3, (result.returncode, result.stderr[-3000:])
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: no space left on device writing "), lines
    assert str(store.resolve()) in lines[0] and "free space and run the same command again" in lines[0], lines
    assert running_runs(store) == [], result.stderr[-3000:]
    return lines[0]


def assert_study_finished(study: str, trials: int) -> None:
    states = [t.state for t in load_study(study).trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == trials, states
    runs = all_runs(study)
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    parent = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert [r.info.status for r in parent] == ["FINISHED"]
    by_id = {r.info.run_id: r for r in runs}
    for trial in load_study(study).trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            run = by_id[trial.user_attrs["mlflow_run_id"]]
            assert run.info.status == "FINISHED" and summary_key("final_val_acc") in run.data.metrics, run.info.run_name


def test_disk_full_mid_study_is_one_line_and_the_same_command_finishes(tmp_path):
    config = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 10, "checkpoint": True}}
    spec = tiny_study_spec(tmp_path, name="full", trials=TRIALS, config=config)
    with small_disk(tmp_path / "mlruns", "32m") as store:
        process = start_cli("study", str(spec), cwd=tmp_path)
        deadline = time.monotonic() + 240
        while complete_trials(store / "optuna.journal") < 2 and process.poll() is None:
            assert time.monotonic() < deadline, "the study did not complete two trials"
            time.sleep(0.05)
        ballast = fill(store)  # mid-study: six trials to go
        stdout, stderr = process.communicate(timeout=300)
        result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
        assert_outage(result, store, "full")

        ballast.unlink()
        assert complete_trials(store / "optuna.journal") >= 2
        assert len(load_study("full").trials) >= 2  # the journal reads (a torn last record is cut back)
        again = run_cli("study", str(spec), cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"{TRIALS} complete" in again.stdout
        assert_study_finished("full", TRIALS)
        assert not list((store / "checkpoints").glob("*")), "a finished trial's checkpoint (or a torn one) is left"


def test_plots_that_fill_the_disk_are_an_outage_and_the_rerun_makes_them(tmp_path):
    spec = tiny_study_spec(tmp_path, name="plots", trials=3)
    # the trials fit (about 2 MB with the 1 MB reserve); the plots' plotly.min.mjs (4.7 MB) does not
    with small_disk(tmp_path / "mlruns", "5m") as store:
        first = run_cli("study", str(spec), cwd=tmp_path)
        assert_outage(first, store, "plots")

        subprocess.run(["mount", "-o", "remount,size=64m", str(store)], check=True)
        again = run_cli("study", str(spec), cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
        assert error_lines(again.stderr, "plots") == [], again.stderr[-3000:]
        assert_study_finished("plots", 3)
        [parent] = [r for r in all_runs("plots") if r.data.tags.get("kind") == "study"]
        plots = {Path(a.path).name for a in mlflow_client().list_artifacts(parent.info.run_id, "plots")}
        assert {"optimization_history.html", "optimization_history.png", "plotly.min.mjs"} <= plots
