"""kill -9 of a study in its final phase, then the same command: the search is not run again, the final runs that
finished are reused, only the missing ones train, no run is left RUNNING, and the study serves the chosen one."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from core.runs.run import Run
from core.study.report import BEST_MODEL_TAG
from tests.helpers import TINY_CONFIG, all_runs, run_cli, start_cli, tiny_study_spec

pytestmark = pytest.mark.slow

RUNS = 2 * 3  # top x seeds


def final_runs() -> list:
    return [run for run in all_runs("tiny") if run.data.tags.get("final") == "true"]


def kill_after_finished_final_runs(process, count: int, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if sum(run.info.status == "FINISHED" for run in final_runs()) >= count:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
                return
        except Exception:
            pass  # the store is not made yet
        time.sleep(0.05)
    raise AssertionError(f"{count} final runs did not finish in {timeout} s")


def test_killed_final_phase_trains_only_what_is_missing(tmp_path):
    # Runs of a few tenths of a second, so the kill lands between the first final run and the last.
    config = {**TINY_CONFIG, "data": {**TINY_CONFIG["data"], "samples": 400}, "train": {"epochs": 6, "batch_size": 32}}
    spec = str(tiny_study_spec(tmp_path, trials=2, config=config, final={"top": 2, "seeds": 3}))
    process = start_cli("study", spec)
    kill_after_finished_final_runs(process, 2)
    before = {run.info.run_id: run for run in final_runs()}
    finished = {run_id for run_id, run in before.items() if run.info.status == "FINISHED"}
    assert 2 <= len(finished) < RUNS
    trials_before = [run for run in all_runs("tiny") if "trial_number" in run.data.tags]

    resumed = run_cli("study", spec)
    assert resumed.returncode == 0, resumed.stderr
    assert "final phase: the best 2 configurations on 3 fresh seeds" in resumed.stdout
    left = RUNS - len(finished)  # said before it trains (a killed one trains again)
    assert f"final phase: 2 configurations x 3 fresh seeds, {left} runs to train ({len(finished)} finished before)" \
        in resumed.stderr
    runs = all_runs("tiny")
    assert not [run for run in runs if run.info.status == "RUNNING"]
    assert len([run for run in runs if "trial_number" in run.data.tags]) == len(trials_before)  # no search again
    done = [run for run in final_runs() if run.info.status == "FINISHED"]
    assert len(done) == RUNS and finished <= {run.info.run_id for run in done}
    trained_now = [run for run in final_runs() if run.info.run_id not in before]
    assert len(trained_now) == RUNS - len(finished)  # only the missing ones (a killed one trains again)
    [parent] = [run for run in runs if run.data.tags.get("kind") == "study"]
    assert parent.info.status == "FINISHED"
    final = json.loads(Run.of(parent.info.run_id, "tiny").read_text("final/final.json"))
    used = {run["run_id"] for row in final["configurations"] for run in row["runs"]}
    assert used == {run.info.run_id for run in done}
    assert parent.data.tags["final_chosen_run_id"] == final["chosen"]["run_id"]
    assert BEST_MODEL_TAG not in parent.data.tags  # the tiny config logs no model (track.log_model=false)
