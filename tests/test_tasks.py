"""Tasks: classification, regression and multi-label, a loss and a training step of one's own (core/tasks.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from core import serving
from core.__main__ import main
from core.compare import (
    BASELINE,
    Compared,
    FoldResult,
    csv_table,
    load_experiment,
    markdown_report,
    markdown_table,
    run_comparison,
    summarize,
)
from core.errors import ConfigError, DataError, UserError
from core.reproduce import evaluate_logged_model, reproduce
from core.study import run_study
from core.study.spec import load_spec
from core.tracking import mlflow_store
from core.train import fit, predict, prepare
from tests.helpers import TINY_CONFIG, all_runs, load_study, tiny_config, tiny_overrides, tiny_study_spec


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Writes a user module into the test's folder and makes it importable, as the user's working folder is."""
    import importlib

    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        importlib.invalidate_caches()
        return name

    return write


def one_line_exit_2(capsys, *args: str) -> str:
    code = main(list(args))
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert not Path("mlruns", "mlflow.db").exists() or not all_runs(), "a run was created"
    return error


def test_whole_number_values_under_auto_are_refused_naming_regression(capsys):
    """scikit-learn's diabetes targets (25..346, a handful of samples each) were trained as 347 classes."""
    error = one_line_exit_2(capsys, "train", *tiny_overrides(**{"data.name": "experiments.diabetes:load",
                                                               "model.hidden": [8]}))
    assert "task=regression" in error and "25..346" in error
    # Chosen explicitly, they train as classes (the user insists) and as values.
    prepare(tiny_config(**{"data.name": "experiments.diabetes:load", "task": "classification"}))
    prepare(tiny_config(**{"data.name": "experiments.diabetes:load", "task": "regression"}))


def test_too_many_sparse_classes_under_auto_are_refused(user_module):
    # 40 classes 0..39, every one present, four samples each (about three in the training part)
    source = ("import numpy as np\ndef load():\n    y = np.repeat(np.arange(40), 4)\n"
              "    return np.random.default_rng(0).normal(size=(len(y), 3)).astype('float32'), y\n")
    user_module("sparse_classes", source)
    with pytest.raises(DataError, match="fewer than 5 training samples.*task=regression"):
        prepare(tiny_config(**{"data.name": "sparse_classes:load"}))


def test_real_targets_under_classification_and_bad_multilabel_targets_are_one_line(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    np.savez(tmp_path / "real.npz", x_train=x, y_train=np.linspace(0, 1, 40))
    real = {"data.name": "npz", "data.path": str(tmp_path / "real.npz"), "task": "classification"}
    error = one_line_exit_2(capsys, "train", *tiny_overrides(**real))
    assert "real numbers" in error and "task=regression" in error
    with pytest.raises(DataError, match="0 or 1"):
        np.savez(tmp_path / "counts.npz", x_train=x, y_train=np.full((40, 3), 2.0))
        prepare(tiny_config(**{"data.name": "npz", "data.path": str(tmp_path / "counts.npz"), "task": "multilabel"}))
    with pytest.raises(DataError, match="task=multilabel"):
        np.savez(tmp_path / "matrix.npz", x_train=x, y_train=np.ones((40, 3)))
        prepare(tiny_config(**{"data.name": "npz", "data.path": str(tmp_path / "matrix.npz")}))


def test_a_loss_that_returns_a_vector_is_one_line_before_any_run(capsys):
    error = one_line_exit_2(capsys, "train", *tiny_overrides(**{"train.loss": "experiments.my_losses:vector_loss"}))
    assert "train.loss=experiments.my_losses:vector_loss" in error and "scalar" in error


def test_a_loss_that_is_not_the_tasks_is_refused_at_once():
    with pytest.raises(ConfigError, match="not a loss of task=regression"):
        tiny_config(**{"task": "regression", "train.loss": "cross_entropy"})
    with pytest.raises(ConfigError, match="classification metric"):
        tiny_config(**{"task": "regression", "track.metrics": ["macro_f1"]})


def test_regression_standardises_with_the_training_part_and_answers_in_the_targets_units():
    config = tiny_config(**{"task": "regression", "data.shape": [6], "train.epochs": 30, "optim.name": "adam",
                            "optim.lr": 0.01})
    prepared = prepare(config)
    train_targets = prepared.data.train_y[torch.as_tensor(prepared.train_idx)].float()
    assert prepared.task.outputs == 1
    assert prepared.task.mean.item() == pytest.approx(train_targets.mean().item(), rel=1e-5)  # training part only
    result = fit(prepared)
    history = result.history
    assert {"train_rmse", "val_rmse", "val_mae", "val_loss"} <= set(history[-1]) and "val_acc" not in history[-1]
    assert history[-1]["val_rmse"] < history[0]["val_rmse"]
    for key in ("final_val_rmse", "final_val_r2", "test_rmse", "test_mae", "test_r2", "final_train_rmse"):
        assert key in result.metrics, key
    truth = prepared.data.test_y.numpy()
    predicted = predict(result.model, prepared.test, prepared.normalize, prepared.task).numpy()[:, 0]
    rmse = float(np.sqrt(np.mean((predicted - truth) ** 2)))
    assert rmse == pytest.approx(result.metrics["test_rmse"], rel=1e-4)  # metrics in the targets' own units
    assert rmse < truth.std()  # it learnt something: better than predicting the mean
    served = serving.serving_model(prepared, result.model)(prepared.data.test_x).detach().numpy()[:, 0]
    assert np.allclose(served, predicted, atol=1e-4)  # the targets' statistics are inside the served model


def test_the_seed_notes_network_trains_with_an_l1_loss_on_real_targets():
    """Seed note 000: an L1 loss against real-valued targets."""
    config = tiny_config(**{"task": "regression", "model.name": "seed_net", "train.loss": "l1",
                            "data.shape": [1, 8, 8], "train.epochs": 2})
    result = fit(config)
    assert result.stop.reason == "completed" and np.isfinite(result.metrics["test_mae"])


def test_multilabel_trains_and_predicts_one_probability_per_label():
    config = tiny_config(**{"task": "multilabel", "data.shape": [10], "train.epochs": 20, "optim.name": "adam",
                            "optim.lr": 0.01})
    prepared = prepare(config)
    assert prepared.data.train_y.shape[1] == 4 and prepared.task.outputs == 4
    result = fit(prepared)
    for key in ("final_val_micro_f1", "final_val_macro_f1", "final_val_map", "test_subset_acc", "test_map"):
        assert 0 <= result.metrics[key] <= 1, key
    assert result.metrics["test_micro_f1"] > 0.6
    probabilities = predict(result.model, prepared.test, prepared.normalize, prepared.task)
    assert probabilities.shape == (len(prepared.data.test_x), 4)
    assert ((probabilities >= 0) & (probabilities <= 1)).all() and not torch.allclose(probabilities.sum(1),
                                                                                       torch.ones(1))


def test_label_smoothing_changes_the_loss_not_the_metrics_names():
    plain, smoothed = (fit(tiny_config(**{"train.epochs": 1, "train.label_smoothing": value}))
                       for value in (0.0, 0.3))
    assert plain.history[0]["train_loss"] != smoothed.history[0]["train_loss"]
    assert set(plain.history[0]) == set(smoothed.history[0])


def test_a_training_step_of_ones_own_trains_and_reproduces_bit_for_bit():
    config = tiny_config(**{"train.step": "experiments.my_losses:mixup", "train.deterministic": True})
    first, second = fit(config), fit(config.copy())
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    plain = fit(tiny_config(**{"train.deterministic": True}))
    assert first.history[-1]["train_loss"] != plain.history[-1]["train_loss"]  # mixup trained, not the plain step
    assert "train_acc" not in first.history[-1] and "val_acc" in first.history[-1]


def test_a_training_step_that_returns_no_scalar_is_one_line_before_any_run(capsys, user_module):
    user_module("bad_step", "def step(model, inputs, targets, context):\n    return model(inputs)\n")
    error = one_line_exit_2(capsys, "train", *tiny_overrides(**{"train.step": "bad_step:step"}))
    assert "train.step=bad_step:step" in error and "scalar" in error


def test_a_loss_of_ones_own_trains():
    result = fit(tiny_config(**{"train.loss": "experiments.my_losses:focal", "train.epochs": 2}))
    assert result.stop.reason == "completed" and "final_val_acc" in result.metrics


def test_regression_splits_are_not_stratified():
    with pytest.raises(ConfigError, match="stratified_kfold"):
        prepare(tiny_config(**{"task": "regression", "split.kind": "stratified_kfold"}))
    prepare(tiny_config(**{"task": "regression", "split.kind": "kfold"}))


def test_a_studys_default_objective_is_the_tasks_in_its_direction(tmp_path):
    config = tiny_config(**{"task": "regression"})
    spec = load_spec(tiny_study_spec(tmp_path, config={"task": "regression", **{"data": {"name": "synthetic"}}},
                                     objective={}))
    assert (spec.metrics, spec.directions) == (["val_rmse"], ["minimize"])
    spec = load_spec(tiny_study_spec(tmp_path, config={"task": "multilabel"}, objective={"metric": "val_map"}))
    assert spec.directions == ["maximize"]
    with pytest.raises(ConfigError, match="val_acc"):
        load_spec(tiny_study_spec(tmp_path, config={"task": "regression"}, objective={"metric": "val_acc"}))
    assert config.task == "regression"


def test_a_comparison_on_rmse_ranks_lower_as_better():
    def fold(train: float, val: float) -> FoldResult:
        return FoldResult(train, val, val, 3, 1.0, [], 200, 100, maximize=False)

    folds = {BASELINE: [fold(10, 20), fold(11, 22), fold(10, 21)],
             "better": [fold(12, 15), fold(12, 16), fold(13, 15)]}
    rmse = Compared("rmse")
    rows = {row["remedy"]: row for row in summarize(folds, rmse)}
    assert rows["better"]["rank"] == 1 and rows[BASELINE]["rank"] == 2
    assert rows[BASELINE]["gap"] == pytest.approx(32 / 3)  # validation worse than training: a positive gap
    table = markdown_table(list(rows.values()), rmse)
    assert "val rmse" in table and "val - train" in table and "| 21 ± 1 |" in table  # as it is, not in %


def test_user_errors_are_user_errors():
    assert issubclass(DataError, UserError)


def regression_config(**extra) -> dict:
    """TINY_CONFIG as a deterministic regression on the synthetic set's values."""
    return {**TINY_CONFIG, "task": "regression",
            "train": {"epochs": 3, "batch_size": 32, "deterministic": True, **extra}}


@pytest.mark.slow
def test_a_regression_study_reproduces_and_evaluates_its_best_trial_bit_for_bit(tmp_path):
    config = {**regression_config(), "track": {**TINY_CONFIG["track"], "log_model": True}}  # evaluate: weights
    spec = tiny_study_spec(tmp_path, name="reg", trials=3, config=config, objective={})
    outcome = run_study(load_spec(spec))
    assert outcome.finished == 3
    run = mlflow_store.client().get_run(outcome.best_run_id)
    assert "summary/test_rmse" in run.data.metrics and "summary/final_val_r2" in run.data.metrics
    assert len(mlflow_store.client().get_metric_history(outcome.best_run_id, "epoch/val_rmse")) == 3
    study = load_study("reg")
    assert study.direction.name == "MINIMIZE" and study.best_value == run.data.metrics["summary/final_val_rmse"]
    result = reproduce(outcome.best_run_id)
    assert result.exact and result.agree and {key for _, key, _, _ in result.rows} >= {"val_rmse", "train_mae"}
    logged, now = evaluate_logged_model(outcome.best_run_id)
    assert set(now) == {"test_loss", "test_rmse", "test_mae"} and now == pytest.approx(logged, abs=1e-6)


@pytest.mark.slow
def test_a_multilabel_study_and_a_study_with_ones_own_step_run_and_reproduce(tmp_path):
    config = {**TINY_CONFIG, "task": "multilabel", "data": {**TINY_CONFIG["data"], "shape": [10]}}
    outcome = run_study(load_spec(tiny_study_spec(tmp_path, name="labels", trials=2, config=config, objective={})))
    assert outcome.finished == 2 and load_study("labels").direction.name == "MAXIMIZE"
    assert "summary/test_map" in mlflow_store.client().get_run(outcome.best_run_id).data.metrics
    config = {**TINY_CONFIG, "train": {"epochs": 2, "batch_size": 32, "deterministic": True,
                                       "step": "experiments.my_losses:mixup",
                                       "loss": "experiments.my_losses:focal"}}
    outcome = run_study(load_spec(tiny_study_spec(tmp_path, name="mixup", trials=2, config=config)))
    assert outcome.finished == 2
    tags = mlflow_store.client().get_run(outcome.best_run_id).data.tags
    assert "code.experiments/my_losses.py" in tags  # logged and hashed like the user's other code
    result = reproduce(outcome.best_run_id)
    assert result.exact and result.agree


@pytest.mark.slow
def test_a_comparison_on_a_regression_task_tests_rmse(tmp_path):
    spec = {"name": "reg compare", "seed": 0, "k": 2, "repeats": 2, "config": regression_config(),
            "remedies": {"baseline": {}, "l2": {"optim.weight_decay": 0.05}}}
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(spec))
    experiment = load_experiment(str(path))
    assert experiment.base.split.kind == "kfold" and experiment.metric == Compared("rmse")
    result = run_comparison(experiment)
    report = markdown_report(result)
    assert "val rmse" in report and "Nadeau-Bengio corrected resampled t-test on validation rmse" in report
    assert all(fold.val > 1 for fold in result.folds[BASELINE])  # in the targets' units (about 50 +- 10)
    rows = {row["remedy"]: row for row in result.table}
    ranked = sorted(rows.values(), key=lambda row: row["val"])
    assert [row["rank"] for row in ranked] == [1, 2]  # the lower RMSE ranks first
    assert csv_table(result.table, experiment.metric).splitlines()[0].startswith("remedy,train_rmse,train_rmse_std")
