"""A trial whose loss goes non-finite is pruned with the reason; an out-of-memory trial fails alone."""

from __future__ import annotations

import gc
import weakref

import optuna
import pytest
import torch

import core.train
from core.signals import Terminated
from core.study import DEFAULT_STORAGE, load_spec, run_study
from core.study.storage import open_storage
from tests.helpers import all_runs, load_study, tiny_study_spec


def test_non_finite_loss_fails_the_trial_with_reason_and_study_goes_on(tmp_path):
    spec_path = tiny_study_spec(tmp_path, name="nan", trials=3, sampler={"name": "random", "seed": 0},
                                space={"optim.lr": {"type": "categorical", "choices": [1.0e30, 0.05]}})
    spec = load_spec(spec_path)
    study = optuna.create_study(study_name="nan", storage=open_storage(DEFAULT_STORAGE), direction="maximize")
    study.enqueue_trial({"optim.lr": 1.0e30})  # trial 0 explodes
    run_study(spec)
    trials = load_study("nan").trials
    # a diverged configuration failed: it says nothing of how it would score, and the pruner must not compare it
    assert trials[0].state == optuna.trial.TrialState.FAIL
    reason = trials[0].user_attrs["fail_reason"]
    assert "non-finite" in reason and "epoch 0" in reason and "step" in reason
    # the study went on to its budget (failed trials do not count towards it)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 3
    for trial in trials:
        exploded = trial.params["optim.lr"] > 1
        assert trial.state == (optuna.trial.TrialState.FAIL if exploded else optuna.trial.TrialState.COMPLETE)
    run = [r for r in all_runs("nan") if r.data.tags.get("trial_number") == "0"][0]
    assert run.info.status == "FAILED" and run.data.tags["state"] == "failed"
    assert "step" in run.data.tags["stop_detail"]


def test_out_of_memory_fails_one_trial_frees_it_and_the_next_runs(tmp_path, monkeypatch):
    spec = load_spec(tiny_study_spec(tmp_path, name="oom", trials=2))
    models: list[weakref.ref] = []
    real_epoch = core.train.train_one_epoch

    def epoch_that_runs_out_of_memory_once(model, state):
        models.append(weakref.ref(model))
        if len(models) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated on CPU)")
        return real_epoch(model, state)

    monkeypatch.setattr(core.train, "train_one_epoch", epoch_that_runs_out_of_memory_once)
    run_study(spec)
    trials = load_study("oom").trials
    assert trials[0].state == optuna.trial.TrialState.FAIL
    assert "out of memory" in trials[0].user_attrs["fail_reason"]
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2
    gc.collect()
    assert models[0]() is None, "the failed trial's model is still held"
    failed = [r for r in all_runs("oom") if r.data.tags.get("trial_number") == "0"][0]
    assert failed.info.status == "FAILED" and "OutOfMemoryError" in failed.data.tags["error"]


def test_interrupt_whose_clean_up_fails_still_ends_the_study_killed(tmp_path, monkeypatch):
    # SIGTERM cut a store call short, so marking the trial FAIL raises too: the stop must stay a stop.
    spec = load_spec(tiny_study_spec(tmp_path, name="stop", trials=2))

    def epoch_interrupted(model, state):
        raise Terminated()

    real_tell = optuna.Study.tell

    def tell_that_fails_for_fail(self, trial, values=None, state=None, **kwargs):
        if state == optuna.trial.TrialState.FAIL:
            raise RuntimeError("storage connection lost")
        return real_tell(self, trial, values, state, **kwargs)

    monkeypatch.setattr(core.train, "train_one_epoch", epoch_interrupted)
    monkeypatch.setattr(optuna.Study, "tell", tell_that_fails_for_fail)
    with pytest.raises(Terminated):
        run_study(spec)
    runs = all_runs("stop")
    assert sorted((r.data.tags.get("kind", "trial"), r.info.status) for r in runs) == [
        ("study", "KILLED"), ("trial", "KILLED")]
    trial_run = [r for r in runs if r.data.tags.get("trial_number")][0]
    assert trial_run.data.tags["state"] == "killed"
