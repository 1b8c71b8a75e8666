"""Trials that survive preemption: a run killed mid-training resumes from its checkpoint, bit for bit."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import optuna
import pytest
import torch

from core import checkpoint
from core.resume import checkpoint_file, load
from core.runs import FitHooks, Place, tracked_fit
from core.train import fit
from tests.helpers import (
    TINY_CONFIG,
    all_runs,
    load_study,
    mlflow_client,
    run_cli,
    start_cli,
    tiny_config,
    tiny_overrides,
    tiny_study_spec,
)

# dropout, shift augmentation, Adam, a step schedule and early stopping: every random stream and every state
RESUMABLE = {"data.samples": 300, "train.epochs": 6, "train.deterministic": True, "model.dropout": 0.2,
             "train.augment": "shift", "train.shift": 1, "optim.name": "adam", "sched.name": "step",
             "sched.step_size": 2, "early_stop.patience": 10}
# about 0.1 s an epoch: long enough to kill it mid-training
SLOW = {**RESUMABLE, "data.samples": 3000, "data.shape": [1, 16, 16], "train.batch_size": 16, "train.epochs": 25,
        "train.checkpoint": True, "track.log_model": True}
EPOCH_KEYS = ("epoch/train_loss", "epoch/train_acc", "epoch/val_loss", "epoch/val_acc", "epoch/lr")


class Preempted(Exception):
    pass


def stop_at(epoch: int):
    def should_stop(current: int, metrics: dict[str, float]) -> str:
        if current == epoch:
            raise Preempted  # after this epoch's checkpoint (the caller is asked last), in the middle of the run
        return ""
    return should_stop


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)  # a global flag: later tests must not inherit it


def test_resumed_fit_equals_the_uninterrupted_one(tmp_path, deterministic):
    whole = fit(tiny_config(**RESUMABLE))
    path = tmp_path / "last.pt"
    with pytest.raises(Preempted):
        fit(tiny_config(**RESUMABLE), should_stop=stop_at(3), checkpoint_path=path)
    saved = checkpoint.load(path)
    assert saved["epoch"] == 3 and len(saved["history"]) == 4
    resumed = fit(tiny_config(**RESUMABLE), resume_from=saved)
    assert resumed.first_epoch == 4 and resumed.steps == whole.steps
    without_time = lambda history: [h | {"epoch_seconds": 0} for h in history]  # noqa: E731
    assert without_time(resumed.history) == without_time(whole.history)
    assert resumed.metrics == whole.metrics
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(),
                                                  resumed.model.state_dict().values()))


def test_resume_refuses_other_data(tmp_path, deterministic):
    path = tmp_path / "last.pt"
    fit(tiny_config(**{**RESUMABLE, "train.epochs": 2}), checkpoint_path=path)
    with pytest.raises(Exception, match="not the one the checkpoint was trained on"):
        fit(tiny_config(**{**RESUMABLE, "data.samples": 320}), resume_from=checkpoint.load(path))


def wait_for_checkpoint(store: Path, epoch: int, process, timeout: float = 120) -> Path:
    """The checkpoint file once it holds `epoch` or later (polled: it is replaced atomically)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        for path in (store / "checkpoints").glob("*.pt"):
            try:
                if checkpoint.load(path)["epoch"] >= epoch:
                    return path
            except Exception:
                continue  # replaced while we read it
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} (exit code {process.poll()})")


def history(run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in mlflow_client().get_metric_history(run_id, key)}


def newest_run(experiment: str) -> str:
    client = mlflow_client()
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                               order_by=["attributes.start_time DESC"], max_results=1)
    return found[0].info.run_id


def weights(run_id: str, folder: Path) -> dict[str, torch.Tensor]:
    path = mlflow_client().download_artifacts(run_id, "weights/state_dict.pt", str(folder))
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_sigkilled_run_resumes_bit_for_bit(tmp_path, isolated_store):
    process = start_cli("train", *tiny_overrides(**SLOW), cwd=tmp_path)
    path = wait_for_checkpoint(isolated_store, 2, process)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    killed_id, killed_at = path.stem, checkpoint.load(path)["epoch"]
    assert process.returncode == -signal.SIGKILL, "the run finished before it was killed"

    resumed = run_cli("train", "--resume", killed_id, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    whole = run_cli("train", *tiny_overrides(**SLOW), cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    runs = {run.info.run_id: run for run in all_runs("train")}
    (resumed_id,) = [i for i, r in runs.items() if r.data.tags.get("resumed_from") == killed_id]
    (whole_id,) = set(runs) - {killed_id, resumed_id}
    assert runs[killed_id].info.status == "FAILED" and runs[resumed_id].info.status == "FINISHED"
    assert runs[resumed_id].data.tags["resumed_at_epoch"] == str(killed_at + 1)
    for key in EPOCH_KEYS:  # the resumed run holds the epochs it trained, each equal to the uninterrupted run's
        mine = history(resumed_id, key)
        assert mine == {step: value for step, value in history(whole_id, key).items() if step > killed_at}, key
        assert min(mine) == killed_at + 1
    steps, whole_steps = history(resumed_id, "step/train_loss"), history(whole_id, "step/train_loss")
    per_epoch = len(whole_steps) // (max(mine) + 1)
    assert steps == {step: value for step, value in whole_steps.items() if step >= (killed_at + 1) * per_epoch}
    final = {k: v for k, v in runs[whole_id].data.metrics.items() if k.startswith("summary/")}
    assert len(final) == 9 and final == {k: runs[resumed_id].data.metrics[k] for k in final}
    mine, theirs = weights(resumed_id, tmp_path / "a"), weights(whole_id, tmp_path / "b")
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not list((isolated_store / "checkpoints").glob("*.pt"))  # finished runs leave no checkpoint


@pytest.mark.slow
def test_resume_of_a_bad_run_is_one_line_and_no_run(tmp_path, isolated_store):
    assert run_cli("train", *tiny_overrides(), cwd=tmp_path).returncode == 0  # no checkpoint: not asked for
    (finished,) = all_runs("train")
    for run_id, expected in (("0123abc", "no run 0123abc"), (finished.info.run_id, "has no checkpoint")):
        result = run_cli("train", "--resume", run_id, cwd=tmp_path)
        assert result.returncode == 2 and expected in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert len(all_runs("train")) == 1


STUDY_CONFIG = {**TINY_CONFIG, "data": {"name": "synthetic", "samples": 3000, "shape": [1, 16, 16], "num_classes": 4},
                "train": {"epochs": 15, "batch_size": 16, "checkpoint": True}}


@pytest.mark.slow
def test_retry_of_a_killed_workers_trial_resumes_from_its_checkpoint(tmp_path, isolated_store):
    spec = tiny_study_spec(tmp_path, name="preempted", trials=3, config=STUDY_CONFIG)
    process = start_cli("study", str(spec), "--workers", "2", cwd=tmp_path)
    path = wait_for_checkpoint(isolated_store, 1, process)
    (victim,) = [t for t in load_study("preempted").trials if t.user_attrs.get("mlflow_run_id") == path.stem]
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    process.communicate(timeout=300)
    killed_at = checkpoint.load(path)["epoch"]

    rerun = run_cli("study", str(spec), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    trials = load_study("preempted").trials
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.params == victim.params
    assert retry.user_attrs["seed"] == victim.user_attrs["seed"]  # the dead trial's random streams go on
    assert retry.user_attrs["resumed_at_epoch"] == killed_at + 1
    assert sorted(retry.intermediate_values) == list(range(15))  # the pruner sees every epoch
    run = mlflow_client().get_run(retry.user_attrs["mlflow_run_id"])
    assert run.data.tags["resumed_from"] == victim.user_attrs["mlflow_run_id"]
    assert run.data.tags["resumed_at_epoch"] == str(killed_at + 1)
    assert sorted(history(run.info.run_id, "epoch/val_acc")) == list(range(killed_at + 1, 15))
    assert run.data.metrics["summary/epochs_run"] == 15
    assert not list((isolated_store / "checkpoints").glob("*.pt"))  # every trial finished: none kept


def test_a_chain_of_resumes_leaves_no_checkpoint_once_the_last_run_finishes(isolated_store):
    config = tiny_config(**{**RESUMABLE, "train.checkpoint": True})
    run_ids, resume = [], None
    for preempted_at in (2, 4):  # killed twice: A, then B resumed from A, then C from B finishes
        with pytest.raises(Preempted):
            tracked_fit(config, Place("chain", "run"), FitHooks(should_stop=stop_at(preempted_at)), resume)
        run_ids.append(newest_run("chain"))
        resume = load(run_ids[-1])
    run_ids.append(tracked_fit(config, Place("chain", "run"), resume=resume).run_id)
    assert len(run_ids) == 3 and not [run for run in run_ids if checkpoint_file(run).exists()]
