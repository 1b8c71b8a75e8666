"""One GPU per study worker (with a faked device list: no GPU here), and MLflow's system metrics on the CPU."""

from __future__ import annotations

import time

import pytest

from core.runs import FitHooks, tracked_fit
from core.study import runner
from tests.helpers import TINY_CONFIG, all_runs, run_cli, tiny_config, tiny_study_spec


def test_workers_get_gpus_round_robin_and_one_gpu_or_none_changes_nothing():
    assert runner.assign_gpus(4, ["0", "1"]) == ["0", "1", "0", "1"]
    assert runner.assign_gpus(2, ["3", "5", "7"]) == ["3", "5"]
    assert runner.assign_gpus(3, ["0"]) == [None, None, None]
    assert runner.assign_gpus(2, []) == [None, None]


def test_the_visible_gpus_follow_cuda_visible_devices_else_the_driver(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert runner.visible_gpus() == ["2", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(runner.torch.cuda, "device_count", lambda: 4)
    assert runner.visible_gpus() == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_each_worker_sees_its_own_gpu_and_its_trials_say_which(tmp_path):
    # ~2 s trials, so that a worker slow to start still gets some (as in test_study_workers)
    slow = {**TINY_CONFIG, "data": {"name": "synthetic", "samples": 3000, "shape": [1, 16, 16], "num_classes": 4},
            "train": {"epochs": 10, "batch_size": 32}}
    spec = tiny_study_spec(tmp_path, name="gpus", trials=6, config=slow)
    result = run_cli("study", str(spec), "--workers", "2", "--gpus", "0,1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    trials = [r for r in all_runs("gpus") if "trial_number" in r.data.tags]
    seen = {(r.data.tags["pid"], r.data.tags["cuda_visible_devices"]) for r in trials}
    workers = {pid for pid, _ in seen}
    assert {gpu for _, gpu in seen} <= {"0", "1"} and len(seen) == len(workers)  # one GPU per worker, always
    if len(workers) == 2:  # (on a loaded machine one worker can take every trial before the other starts)
        assert {gpu for _, gpu in seen} == {"0", "1"}


@pytest.mark.slow
def test_bad_gpu_list_is_one_line_and_exit_2(tmp_path):
    result = run_cli("study", str(tiny_study_spec(tmp_path)), "--gpus", "first,second", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "--gpus" in result.stderr
    assert not (tmp_path / "mlruns").exists()


def test_system_metrics_appear_on_the_run(monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    config = tiny_config(**{"track.system_metrics": True, "train.epochs": 15})
    slow = FitHooks(should_stop=lambda epoch, metrics: time.sleep(0.1) or "")
    tracked_fit(config, hooks=slow)  # a run of 1.5 s at least
    (run,) = all_runs("train")
    system = {key for key in run.data.metrics if key.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system, system
