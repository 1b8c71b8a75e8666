"""Studies: one parent run, one child run per trial, states, links both ways, resume, k-fold, Pareto front."""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter

import optuna
import pytest

from core.config import Config
from core.runs.logged import logged_config
from core.study import DEFAULT_STORAGE, load_spec, run_study, trial_seed
from core.study.runner import sweep_dead_trials
from core.study.storage import budget_lock, open_storage
from tests.helpers import TINY_CONFIG, all_runs, free_port, load_study, mlflow_client, run_cli, tiny_study_spec

COMPLETE, PRUNED, FAIL = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                          optuna.trial.TrialState.FAIL)


def runs_by_kind(name: str):
    runs = all_runs(name)
    parents = [r for r in runs if r.data.tags.get("kind") == "study"]
    trials = [r for r in runs if r.data.tags.get("trial_number") and "fold" not in r.data.tags]
    return parents, trials, runs


def test_every_trial_is_a_child_run_and_each_finds_the_other(tmp_path):
    spec = load_spec(tiny_study_spec(tmp_path, name="s1", trials=3))
    outcome = run_study(spec)
    assert (outcome.finished, outcome.pruned, outcome.failed) == (3, 0, 0)
    (parent,), trial_runs, runs = runs_by_kind("s1")
    assert len(runs) == 4 and parent.info.status == "FINISHED"
    study = load_study("s1")
    for trial in study.trials:
        (run,) = [r for r in trial_runs if r.info.run_id == trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["study"] == "s1" and run.data.tags["trial_number"] == str(trial.number)
        assert run.data.tags["state"] == "complete" and run.info.status == "FINISHED"
        assert int(run.data.tags["seed"]) == trial_seed(0, trial.number) == trial.user_attrs["seed"]
        config = Config.from_flat(logged_config(run))
        assert run.data.params["trial_number"] == str(trial.number)  # a chart axis and group key
        assert config.optim.lr == trial.params["optim.lr"] and config.seed == trial.user_attrs["seed"]
        assert run.info.run_name.startswith(f"trial-{trial.number:03d} lr=")
    client = mlflow_client()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    sizes = {a.path: a.file_size for a in client.list_artifacts(parent.info.run_id, "plots")}
    plots = set(sizes)
    assert "trials.csv" in artifacts
    assert {"plots/optimization_history.html", "plots/optimization_history.png",
            "plots/parallel_coordinate.html", "plots/intermediate_values.png"} <= plots
    assert "plots/parallel_coordinate.png" not in plots  # unreadable as a static image
    # One plotly.js for all the pages (4.6 MB each when every page embedded its own copy).
    assert sizes["plots/plotly.min.mjs"] > 3_000_000
    assert all(size < 100_000 for path, size in sizes.items() if path.endswith(".html"))
    note = parent.data.tags["mlflow.note.content"]
    assert "Best value" in note and "3 complete" in note
    assert outcome.best_run_id == study.best_trial.user_attrs["mlflow_run_id"]
    assert parent.data.tags["best_run_id"] == outcome.best_run_id


def test_pruned_and_failed_trials(tmp_path):
    spec = load_spec(tiny_study_spec(tmp_path, name="s2", trials=3,
                                     pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                                     space={"optim.lr": {"type": "categorical", "choices": [0.3, 1.0e-6]},
                                            "model.name": {"type": "categorical",
                                                           "choices": ["mlp", "alexnet_cifar"]}}))
    study = optuna.create_study(study_name="s2", storage=open_storage(DEFAULT_STORAGE), direction="maximize")
    study.enqueue_trial({"optim.lr": 0.3, "model.name": "mlp"})  # learns: complete
    study.enqueue_trial({"optim.lr": 1.0e-6, "model.name": "mlp"})  # barely moves: pruned at its first epoch
    study.enqueue_trial({"optim.lr": 0.3, "model.name": "alexnet_cifar"})  # too deep for 8x8 inputs: fails
    run_study(spec)
    trials = load_study("s2").trials
    assert [t.state for t in trials[:3]] == [COMPLETE, PRUNED, FAIL]
    assert sum(t.state in (COMPLETE, PRUNED) for t in trials) == 3  # the failed one does not count
    _, trial_runs, _ = runs_by_kind("s2")
    by_number = {int(r.data.tags["trial_number"]): r for r in trial_runs}
    assert sorted(by_number) == [t.number for t in trials]

    pruned = by_number[1]
    assert pruned.info.status == "FINISHED" and pruned.data.tags["state"] == "pruned"
    history = mlflow_client().get_metric_history(pruned.info.run_id, "epoch/val_acc")
    assert [m.step for m in history] == [0] and "pruner" in trials[1].user_attrs["prune_reason"]

    failed = by_number[2]
    assert failed.info.status == "FAILED" and failed.data.tags["state"] == "failed"
    assert "too deep" in failed.data.tags["error"] and "too deep" in trials[2].user_attrs["fail_reason"]
    assert failed.data.params["model.name"] == "alexnet_cifar" and failed.data.params["trial_number"] == "2"
    # the runs table shows how each ended by its name, with no column added
    assert [by_number[n].info.run_name for n in range(3)] == ["trial-000 mlp lr=0.3", "trial-001 pruned@1 mlp lr=1e-6",
                                                              "trial-002 failed alexnet_cifar lr=0.3"]


def test_trial_run_names_are_short_and_name_no_key_twice():
    from core.study.trial import trial_run_name

    params = {"model.name": "small_cnn", "train.augment": "none", "optim.name": "adam", "optim.lr": 0.0031416,
              "model.args.lr": 2.0, "model.hidden": [256, 128], "train.dropout": 0.25}
    assert trial_run_name(8, params) == "trial-008 small_cnn augment=none adam optim.lr=3.1e-3 args.lr=2 " \
                                        "hidden=[256,128] dropout=0.25"


def test_a_study_without_intermediate_values_has_no_such_plot_and_no_optuna_warning(tmp_path, caplog):
    # The objective `parameters` is known only at the end: no trial reports as it trains.
    spec = load_spec(tiny_study_spec(tmp_path, name="s8", trials=2, objective={"metric": "parameters",
                                                                               "direction": "minimize"}))
    optuna_log = logging.getLogger("optuna")
    optuna_log.addHandler(caplog.handler)  # Optuna's logger does not propagate to the root
    try:
        outcome = run_study(spec)
    finally:
        optuna_log.removeHandler(caplog.handler)
    plots = {a.path for a in mlflow_client().list_artifacts(outcome.parent_run_id, "plots")}
    assert "plots/optimization_history.html" in plots and not {p for p in plots if "intermediate_values" in p}
    assert not [r for r in caplog.records if r.name.startswith("optuna") and r.levelno >= logging.WARNING]


def test_resume_continues_to_exactly_the_budget_and_reuses_the_parent(tmp_path):
    path = tiny_study_spec(tmp_path, name="s3", trials=2)
    run_study(load_spec(path))
    run_study(load_spec(path, trials=4))
    trials = load_study("s3").trials
    assert Counter(t.state for t in trials) == {COMPLETE: 4}
    parents, trial_runs, _ = runs_by_kind("s3")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED" and len(trial_runs) == 4
    run_study(load_spec(path, trials=4))  # nothing left to do
    assert len(load_study("s3").trials) == 4


def test_trials_keep_weights_and_the_best_trial_gets_the_mlflow_model(tmp_path):
    import mlflow
    import torch

    config = {**TINY_CONFIG, "track": {**TINY_CONFIG["track"], "log_model": True}}
    spec = load_spec(tiny_study_spec(tmp_path, name="s7", trials=3, config=config))
    outcome = run_study(spec)
    client = mlflow_client()
    (parent,), trial_runs, _ = runs_by_kind("s7")
    assert parent.data.tags["best_model_run_id"] == outcome.best_run_id
    for run in trial_runs:
        paths = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert "weights" in paths
        assert ("model" in paths or bool(client.search_logged_models([run.info.experiment_id], filter_string=
                f"source_run_id = '{run.info.run_id}'").to_list())) == (run.info.run_id == outcome.best_run_id)
    (logged,) = client.search_logged_models([parent.info.experiment_id]).to_list()
    best_run = client.get_run(outcome.best_run_id)
    assert {m.key: m.value for m in logged.metrics} == {k: v for k, v in best_run.data.metrics.items()
                                                         if k.startswith(("summary/final_", "summary/test_"))}
    assert len(client.get_metric_history(outcome.best_run_id, "summary/test_acc")) == 1  # its history is unchanged
    assert logged.name == f"s7-trial-{outcome.best_trial:03d}"  # says what it is, not "model"
    model = mlflow.pytorch.load_model(f"models:/{logged.model_id}")
    probabilities = model(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))  # raw pixels in, as the data stores them
    assert probabilities.shape == (2, 4) and torch.allclose(probabilities.sum(dim=1), torch.ones(2))
    spec.trials = 4  # resumed: the model is logged again only if the best trial changed
    second = run_study(spec)
    models = client.search_logged_models([parent.info.experiment_id]).to_list()
    assert len(models) == (1 if second.best_run_id == outcome.best_run_id else 2)


def test_k_fold_objective_is_the_mean_over_folds(tmp_path):
    config = {**TINY_CONFIG, "split": {"kind": "stratified_kfold", "k": 3}}
    spec = load_spec(tiny_study_spec(tmp_path, name="s4", trials=2, config=config))
    run_study(spec)
    _, trial_runs, runs = runs_by_kind("s4")
    for trial in load_study("s4").trials:
        (trial_run,) = [r for r in trial_runs if r.info.run_id == trial.user_attrs["mlflow_run_id"]]
        folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == trial_run.info.run_id]
        assert sorted(r.data.tags["fold"] for r in folds) == ["0", "1", "2"]
        mean = sum(r.data.metrics["summary/final_val_acc"] for r in folds) / 3
        assert trial.value == pytest.approx(mean)
        assert sorted(trial.intermediate_values) == [0, 1, 2]  # reported after each fold


def test_a_pruned_k_fold_trial_is_a_finished_run_tagged_pruned(tmp_path):
    config = {**TINY_CONFIG, "split": {"kind": "stratified_kfold", "k": 3}}
    spec = load_spec(tiny_study_spec(tmp_path, name="s8", trials=2, config=config,
                                     pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
                                     space={"optim.lr": {"type": "categorical", "choices": [0.3, 1.0e-6]}}))
    study = optuna.create_study(study_name="s8", storage=open_storage(DEFAULT_STORAGE), direction="maximize")
    study.enqueue_trial({"optim.lr": 0.3})  # learns: complete
    study.enqueue_trial({"optim.lr": 1.0e-6})  # barely moves: pruned after its first fold
    outcome = run_study(spec)
    assert (outcome.finished, outcome.pruned) == (1, 1)
    _, trial_runs, runs = runs_by_kind("s8")
    (pruned,) = [r for r in trial_runs if r.data.tags["trial_number"] == "1"]
    assert pruned.info.status == "FINISHED" and pruned.data.tags["state"] == "pruned"
    folds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == pruned.info.run_id]
    assert [r.data.tags["fold"] for r in folds] == ["0"] and folds[0].info.status == "FINISHED"


def test_multi_objective_logs_the_pareto_front(tmp_path):
    spec = load_spec(tiny_study_spec(tmp_path, name="s5", trials=3,
                                     objective={"metrics": ["val_acc", "parameters"],
                                                "directions": ["maximize", "minimize"]},
                                     space={"model.hidden": {"type": "int", "low": 2, "high": 64, "log": True}}))
    outcome = run_study(spec)
    assert outcome.finished == 3 and len(outcome.best_values) == 2
    (parent,), _, _ = runs_by_kind("s5")
    paths = {a.path for a in mlflow_client().list_artifacts(parent.info.run_id)}
    assert "pareto_front.csv" in paths


@pytest.mark.slow
def test_cli_prints_what_it_promises(tmp_path):
    # a port of its own: a Visdom server the user left on 8097 (make run) must not change what is printed
    no_visdom = f"track.visdom_url=http://127.0.0.1:{free_port()}"
    result = run_cli("study", str(tiny_study_spec(tmp_path, name="s6")), "--trials", "2", no_visdom, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for text in ("2 complete", "best: trial", "optim.lr =", "best trial's MLflow run:", "python -m core ui",
                 "python -m core visdom"):
        assert text in result.stdout
    again = run_cli("study", str(tiny_study_spec(tmp_path, name="s6")), "--trials", "2", cwd=tmp_path)
    assert again.returncode == 0 and "already has 2 finished trials" in again.stdout and "--trials" in again.stdout
    assert len(load_study("s6").trials) == 2  # nothing was run


@pytest.mark.slow
def test_cli_shows_a_multi_objective_front_not_one_best(tmp_path):
    spec = tiny_study_spec(tmp_path, name="s9", trials=3,
                           objective={"metrics": ["val_acc", "parameters"], "directions": ["maximize", "minimize"]},
                           space={"model.hidden": {"type": "int", "low": 2, "high": 64, "log": True}})
    result = run_cli("study", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Pareto front:" in result.stdout and "highest val_acc: trial" in result.stdout
    assert "best: trial" not in result.stdout


def test_a_study_whose_every_trial_fails_stops_instead_of_spinning(tmp_path):
    from core.study.runner import FAILURES_IN_A_ROW

    spec = load_spec(tiny_study_spec(tmp_path, name="s10", trials=3,
                                     space={"model.name": {"type": "categorical", "choices": ["alexnet_cifar"]}}))
    outcome = run_study(spec)  # every trial: a model too deep for 8x8 inputs
    assert (outcome.finished, outcome.failed) == (0, FAILURES_IN_A_ROW)


def test_a_trial_whose_worker_died_before_naming_itself_is_swept(tmp_path):
    """A worker killed between study.ask() and recording its host and pid left a trial RUNNING for ever."""
    storage = str(tmp_path / "optuna.journal")
    study = optuna.create_study(study_name="orphan", storage=open_storage(storage))
    orphan = study.ask()
    named = study.ask()
    named.set_user_attr("host", socket.gethostname())
    named.set_user_attr("pid", os.getpid())  # alive: this process
    with budget_lock(storage, "orphan"):
        assert sweep_dead_trials(study, storage) == [orphan.number]
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states == {orphan.number: optuna.trial.TrialState.FAIL, named.number: optuna.trial.TrialState.RUNNING}


def test_the_default_space_gives_hidden_widths_to_the_mlp_only():
    from pathlib import Path

    from torch import nn

    from core.models import build_model
    from core.study.space import sample

    spec = load_spec(Path(__file__).resolve().parents[1] / "studies" / "digits_mlp.yaml")
    values = {"model.hidden": 48, "train.augment": "shift", "optim.name": "adam", "optim.lr": 0.01,
              "optim.weight_decay": 1e-4, "model.dropout": 0.1, "train.batch_size": 64}
    mlp = sample(spec.params, optuna.trial.FixedTrial({**values, "model.name": "mlp"}), spec.base)
    cnn = sample(spec.params, optuna.trial.FixedTrial({**values, "model.name": "small_cnn"}), spec.base)
    assert mlp.model.hidden == [48, 48] and cnn.model.hidden == [] and cnn.train.augment == ["shift"]
    linear = [m for m in build_model(cnn.model, (1, 8, 8), 10).modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(64 * 2 * 2, 10)]  # [32, 64] convs, 8 -> 4 -> 2


def test_a_resumed_study_retries_what_was_stopped_and_proposes_nothing_it_has_tried(tmp_path, monkeypatch, caplog):
    """Ctrl-C, then the same command: the stopped trial is retried (retry_of), the sampler does not start over
    from its seed (it drew trial 0's parameters again), the study says it resumes, and its objective is named."""
    import core.study.trial

    path = tiny_study_spec(tmp_path, name="again", trials=2)
    run_study(load_spec(path))
    with monkeypatch.context() as patch:
        patch.setattr(core.study.trial, "fit_in", lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
        with pytest.raises(KeyboardInterrupt):
            run_study(load_spec(path, trials=5))
    with caplog.at_level(logging.INFO, logger="core.study.runner"):
        run_study(load_spec(path, trials=5))
    assert "resuming study again: 2 finished, trial 2 retried" in caplog.messages
    study = load_study("again")
    retries = [t for t in study.trials if "retry_of" in t.user_attrs]
    assert [(t.user_attrs["retry_of"], t.params) for t in retries] == [(2, study.trials[2].params)]
    assert retries[0].user_attrs["retry_reason"] == "stopped by Ctrl-C (SIGINT)"
    tried = [tuple(sorted(t.params.items())) for t in study.trials if "retry_of" not in t.user_attrs]
    assert len(tried) == len(set(tried)) == 5
    assert Counter(t.state for t in study.trials) == {COMPLETE: 5, FAIL: 1}
    assert study.metric_names == ["val_acc"]  # optuna-dashboard's axis: not "Objective 0"


def test_the_summary_gives_the_best_trials_test_score_and_says_when_trials_tie(tmp_path, capsys):
    from core.commands.study import print_outcome
    from core.study.report import tie_note

    outcome = run_study(load_spec(tiny_study_spec(tmp_path, name="test-score", trials=2)))
    logged = {r.info.run_id: r.data.metrics["summary/test_acc"] for r in all_runs("test-score")
              if "summary/test_acc" in r.data.metrics}
    assert outcome.best_test == ("test_acc", logged[outcome.best_run_id])
    print_outcome(outcome, ["val_acc"], f"http://127.0.0.1:{free_port()}")
    assert f"(test_acc={logged[outcome.best_run_id]:.4f}, as logged" in capsys.readouterr().out

    trials = [optuna.trial.create_trial(value=value, user_attrs={"val_samples": 287})
              for value in (0.9861, 0.9, 0.9861)]
    for number, trial in enumerate(trials):
        trial.number = number
    assert tie_note(trials, trials[0], "val_acc") == ("2 trials tie at val_acc 0.9861 "
                                                      "(one validation sample is 0.35 points): trials 0, 2")
    assert tie_note(trials[:2], trials[0], "val_acc") == ""


def test_a_study_saves_the_runs_tables_columns_and_ui_links_to_them(tmp_path):
    import json

    from core.commands.ui import last_experiment_url
    from core.runs import views
    from core.tracking import mlflow_store

    run_study(load_spec(tiny_study_spec(tmp_path, name="columns", trials=1)))
    experiment = mlflow_store.experiment_id("columns")
    saved = json.loads(mlflow_client().get_experiment(experiment).tags[views.TAG_PREFIX + views.STUDY_VIEW])
    assert json.loads(saved["state"]) == {"selectedColumns": ["tags.`state`", "metrics.`summary/final_val_acc`",
                                                              "metrics.`summary/test_acc`"]}
    assert last_experiment_url("http://b").endswith(f"/experiments/{experiment}/runs?workflowType=machine_learning"
                                                    f"&viewStateShareKey={views.STUDY_VIEW}")
