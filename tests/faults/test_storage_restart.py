"""A PostgreSQL restart under the Optuna storage while a study runs (issue 25, item 4).

A real cluster on loopback, started and stopped with pg_ctl (fast shutdown: sessions are cut, as in a
restart). A short restart is waited out and the study completes; a server kept down past the window
(CORE_STORAGE_OUTAGE_SECONDS, a few seconds here) ends it with one line, exit 3, and no run RUNNING.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from tests.conftest import need_service
from tests.helpers import TINY_CONFIG, free_port, mlflow_client, start_cli, tiny_study_spec
from tests.test_postgres import _has_user, as_postgres

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Cluster:
    """A throwaway PostgreSQL cluster that the test stops and starts again."""

    def __init__(self, bin_dir: Path, folder: Path):
        self.bin_dir, self.folder, self.port = bin_dir, folder, free_port()
        self.data = folder / "data"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run(as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", *args]), check=True,
                       capture_output=True, timeout=120)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.folder / "server.log"), "-o",
                    f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F",  # -F: no fsync, a throwaway cluster
                    "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")  # open sessions are cut, as a restart or a crash of the server does

    def running(self) -> bool:
        return subprocess.run(as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"]),
                              capture_output=True).returncode == 0


@pytest.fixture
def cluster():
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    need_service(bool(binaries), "PostgreSQL is not installed (apt-get install -y postgresql)")
    if os.geteuid() == 0:
        need_service(_has_user("postgres"), "no postgres system user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="core-pg-restart-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    server = Cluster(Path(binaries[-1]).parent, folder)
    subprocess.run(as_postgres([str(server.bin_dir / "initdb"), "-D", str(server.data), "-U", "postgres",
                                "--auth=trust"]), check=True, capture_output=True)
    server.start()
    try:
        subprocess.run(as_postgres([str(server.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port),
                                    "-U", "postgres", "optuna"]), check=True, capture_output=True)
        yield server
    finally:
        if server.running():
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


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
