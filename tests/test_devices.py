"""One GPU per study worker (with a faked device list: no GPU here), and MLflow's system metrics on the CPU."""

from __future__ import annotations

import time

import pytest
import torch

from core import device
from core.errors import UserError
from core.runs import FitHooks, tracked_fit
from core.study import runner
from tests.helpers import TINY_CONFIG, all_runs, run_cli, run_python, tiny_config, tiny_study_spec


def test_workers_get_gpus_round_robin_and_one_gpu_or_none_changes_nothing():
    assert runner.assign_gpus(4, ["0", "1"]) == ["0", "1", "0", "1"]
    assert runner.assign_gpus(2, ["3", "5", "7"]) == ["3", "5"]
    assert runner.assign_gpus(3, ["0"]) == [None, None, None]
    assert runner.assign_gpus(2, []) == [None, None]


def test_the_visible_gpus_follow_cuda_visible_devices_else_the_driver(monkeypatch):
    monkeypatch.setattr(device.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 3")
    assert device.worker_gpus(None) == ["2", "3"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(device.torch.cuda, "device_count", lambda: 4)
    assert device.worker_gpus(None) == ["0", "1", "2", "3"]


def test_gpus_are_this_process_device_numbers_and_checked_against_the_devices_there_are(monkeypatch):
    monkeypatch.setattr(device.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")  # cuda:0 is physical GPU 2
    assert device.worker_gpus(["1", "0"]) == ["3", "2"]
    assert device.worker_gpus(["GPU-abc"]) == ["GPU-abc"]  # a UUID goes through as given
    with pytest.raises(UserError, match=r"GPU 2 is not there; this process sees GPUs 0-1 \(CUDA_VISIBLE_DEVICES=2,3\)"):
        device.worker_gpus(["2", "3"])
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    monkeypatch.setattr(device.torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match="GPU 1 is not there; this process sees GPUs 0-0$"):
        device.worker_gpus(["0", "1"])  # --gpus 0,1 on a one-GPU machine
    monkeypatch.setattr(device.torch.cuda, "device_count", lambda: 0)
    with pytest.raises(UserError, match="no CUDA device"):
        device.worker_gpus(["0"])


def test_gpus_that_are_not_there_are_one_line_and_exit_2_before_anything(tmp_path):
    result = run_cli("study", str(tiny_study_spec(tmp_path)), "--workers", "2", "--gpus", "0,1", cwd=tmp_path,
                     CUDA_VISIBLE_DEVICES="")  # no GPU visible, on any machine
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--gpus 0,1: GPU 0 is not there" in result.stderr
    assert not (tmp_path / "mlruns").exists()


def test_the_study_checks_its_base_config_on_the_cpu_and_keeps_no_data(monkeypatch):
    from types import SimpleNamespace

    from core import data

    seen = []
    loaded = lambda config: SimpleNamespace(data=data.load_dataset(config.data, config.device),  # noqa: E731
                                            model=torch.nn.Linear(1, 1))
    monkeypatch.setattr(runner, "prepare", lambda config: seen.append(config.device) or loaded(config))
    spec = SimpleNamespace(base=tiny_config(device="auto"))
    runner.check_base(spec, workers=2)
    assert seen == ["cpu"] and spec.base.device == "auto" and not data._CACHE


@pytest.mark.slow
def test_each_worker_sees_its_own_gpu_and_its_trials_say_which(tmp_path):
    # ~2 s trials, so that a worker slow to start still gets some (as in test_study_workers)
    slow = {**TINY_CONFIG, "data": {"name": "synthetic", "samples": 3000, "shape": [1, 16, 16], "num_classes": 4},
            "train": {"epochs": 10, "batch_size": 32}}
    spec = tiny_study_spec(tmp_path, name="gpus", trials=6, config=slow)
    # two GPUs faked in the main process (no GPU here): its workers get CUDA_VISIBLE_DEVICES 0 and 1, and train
    # on the CPU (the tiny config's device)
    result = run_python("import sys, torch; torch.cuda.device_count = lambda: 2; from core.__main__ import main; "
                        f"sys.exit(main(['study', {str(spec)!r}, '--workers', '2', '--gpus', '0,1']))", cwd=tmp_path)
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
