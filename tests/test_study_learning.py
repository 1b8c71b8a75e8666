"""Studies that learn more per trial: importances, warm starts, stopping rules, Wilcoxon pruning, the dashboard."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigError
from core.study import load_spec, run_study
from tests.helpers import all_runs, mlflow_client, tiny_study_spec

TWO_PARAMS = {"optim.lr": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
              "model.hidden": {"type": "int", "low": 4, "high": 32}}


def parent_of(name: str):
    (parent,) = [r for r in all_runs(name) if r.data.tags.get("kind") == "study"]
    return parent


@pytest.mark.parametrize("evaluator", ["ped_anova", "fanova"])
def test_importances_are_logged_on_the_parent_run_and_in_the_outcome(tmp_path, evaluator):
    spec = load_spec(tiny_study_spec(tmp_path, name=f"imp-{evaluator}", trials=10, space=TWO_PARAMS,
                                     importance={"evaluator": evaluator}, config=_one_epoch()))
    outcome = run_study(spec)
    assert set(outcome.importances) == {"optim.lr", "model.hidden"}
    assert list(outcome.importances.values()) == sorted(outcome.importances.values(), reverse=True)
    parent = parent_of(spec.name)
    assert {k for k in parent.data.metrics if k.startswith("importance/")} == {"importance/optim.lr",
                                                                            "importance/model.hidden"}
    assert f"Parameter importance ({evaluator}): " in parent.data.tags["mlflow.note.content"]
    plots = {a.path for a in mlflow_client().list_artifacts(parent.info.run_id, "plots")}
    assert "plots/param_importances.png" in plots


def test_too_few_trials_for_importances_is_said_not_computed(tmp_path):
    outcome = run_study(load_spec(tiny_study_spec(tmp_path, name="imp-few", trials=3, config=_one_epoch())))
    assert outcome.importances is None and "3 complete trials, at least 10 needed" in outcome.importance_note
    parent = parent_of("imp-few")
    assert not any(k.startswith("importance/") for k in parent.data.metrics)
    assert "not computed: 3 complete trials" in parent.data.tags["mlflow.note.content"]


def test_an_unknown_importance_evaluator_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="importance"):
        load_spec(tiny_study_spec(tmp_path, name="imp-bad", importance={"evaluator": "shap"}))


def _one_epoch(**extra):
    from tests.helpers import TINY_CONFIG

    return {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}, **extra}


# ---- warm starts -------------------------------------------------------------------------------------

def test_warm_start_from_a_study_queues_its_best_trials_once(tmp_path):
    from core.study.warm import plan
    from tests.helpers import load_study

    first = run_study(load_spec(tiny_study_spec(tmp_path, name="ws-a", trials=4, space=TWO_PARAMS,
                                                config=_one_epoch())))
    spec = load_spec(tiny_study_spec(tmp_path, name="ws-b", trials=3, config=_one_epoch()))  # space: optim.lr only
    starts = plan(spec, "mlruns/optuna.journal", "ws-a", top=2)
    assert [s.params.keys() for s in starts] == [{"optim.lr"}, {"optim.lr"}]  # model.hidden is not in this space
    assert starts[0].params["optim.lr"] == first.best_params["optim.lr"]
    run_study(spec, warm_starts=starts)
    trials = load_study("ws-b").trials
    assert [t.user_attrs.get("warm_start_from") for t in trials[:2]] == [s.origin for s in starts]
    assert trials[0].params == starts[0].params and "warm_start_from" not in trials[2].user_attrs
    (run,) = [r for r in all_runs("ws-b") if r.data.tags.get("trial_number") == "0"]
    assert run.data.tags["warm_start_from"] == f"study ws-a trial {first.best_trial}"
    spec.trials = 4  # resumed with the same warm start: nothing queued twice
    run_study(spec, warm_starts=starts)
    trials = load_study("ws-b").trials
    assert len(trials) == 4 and sum("warm_start_from" in t.user_attrs for t in trials) == 2


def test_warm_start_from_a_run_and_by_hand(tmp_path):
    from core.study.warm import plan

    outcome = run_study(load_spec(tiny_study_spec(tmp_path, name="ws-c", trials=1, config=_one_epoch())))
    spec = load_spec(tiny_study_spec(tmp_path, name="ws-d", trials=1, space=TWO_PARAMS))
    (start,) = plan(spec, "mlruns/optuna.journal", outcome.best_run_id)
    assert start.params == {"optim.lr": outcome.best_params["optim.lr"], "model.hidden": 16}  # typed from text
    assert start.origin == f"run {outcome.best_run_id}"
    (by_hand,) = plan(spec, "mlruns/optuna.journal", enqueue=["optim.lr=0.05, model.hidden=8"])
    assert by_hand.params == {"optim.lr": 0.05, "model.hidden": 8}


def test_warm_start_from_a_small_cnn_run_leaves_out_the_mlp_only_width(isolated_store):
    """The default study's model.hidden applies to mlp trials only: a small_cnn run logs an empty one."""
    from core.study.warm import plan

    run = mlflow_client().create_run(mlflow_client().create_experiment("cnn"))
    for key, value in {"model.name": "small_cnn", "model.hidden": "[]", "optim.name": "adamw", "optim.lr": "0.04",
                       "train.augment": "none"}.items():
        mlflow_client().log_param(run.info.run_id, key, value)
    spec = load_spec(Path(__file__).parent.parent / "studies" / "digits_mlp.yaml")
    (start,) = plan(spec, "mlruns/optuna.journal", run.info.run_id)
    assert start.params == {"model.name": "small_cnn", "optim.name": "adamw", "optim.lr": 0.04,
                            "train.augment": "none"}


@pytest.mark.parametrize("args, message", [
    (["--enqueue", "optim.lr=0.9"], "optim.lr=0.9 is outside the space"),
    (["--enqueue", "optim.momentum=0.9"], "optim.momentum is not in the study's space"),
    (["--enqueue", "optim.lr"], "give key=value items"),
    (["--warm-start", "no-such-study"], "no study of that name"),
    (["--warm-start", "0123456789abcdef0123456789abcdef"], "no MLflow run with that id"),
])
def test_bad_warm_starts_are_one_line_and_create_nothing(tmp_path, args, message):
    from core.commands import study
    from core.errors import UserError

    parser = __import__("argparse").ArgumentParser()
    study.add_arguments(parser)
    with pytest.raises(UserError, match=message):
        study.main(parser.parse_args([str(tiny_study_spec(tmp_path, name="ws-bad")), *args]))
    assert not (tmp_path / "mlruns").exists() or not any((tmp_path / "mlruns").iterdir())


# ---- stopping rules ----------------------------------------------------------------------------------

def test_target_stops_the_study_and_a_resume_runs_nothing(tmp_path):
    from tests.helpers import load_study

    path = tiny_study_spec(tmp_path, name="stop-t", config=_one_epoch(), budget={"trials": 6, "target": 0.0})
    outcome = run_study(load_spec(path))
    assert outcome.finished == 1 and outcome.stopped_by == "target" and "reached the target 0" in outcome.stopped_detail
    parent = parent_of("stop-t")
    assert parent.data.tags["stopped_by"] == "target" and "Stopped by the target rule" in \
        parent.data.tags["mlflow.note.content"]
    again = run_study(load_spec(path))
    assert again.already_done and again.stopped_by == "target" and len(load_study("stop-t").trials) == 1


def test_patience_stops_after_n_trials_without_improving_by_min_delta(tmp_path):
    budget = {"trials": 8, "patience": 2, "min_delta": 1.0}  # accuracy never improves by 1.0
    spec = load_spec(tiny_study_spec(tmp_path, name="stop-p", config=_one_epoch(), budget=budget))
    outcome = run_study(spec)
    assert outcome.finished == 3 and outcome.stopped_by == "patience"
    assert outcome.stopped_detail.startswith("2 finished trials without improving the best val_acc by at least 1")


def test_stopping_rules_are_directed_and_checked(tmp_path):
    import optuna

    from core.study.stopping import stopped_by

    spec = load_spec(tiny_study_spec(tmp_path, name="stop-d", objective={"metric": "val_loss",
                                                                         "direction": "minimize"},
                                     budget={"trials": 9, "target": 0.5, "patience": 3, "min_delta": 0.1}))
    study = optuna.create_study(direction="minimize")
    for value in (0.9, 0.85, 0.7, 0.75, 0.65):  # 0.7 improves by >= 0.1; 0.85, 0.75, 0.65 do not
        study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=value))
    assert stopped_by(spec, study) is None
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.62))
    assert stopped_by(spec, study)[0] == "patience"
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.4))
    assert stopped_by(spec, study)[0] == "target"
    for budget, message in (({"patience": 0}, "patience"), ({"target": "high"}, "target"), ({"trails": 3}, "budget")):
        with pytest.raises(ConfigError, match=message):
            load_spec(tiny_study_spec(tmp_path, name="stop-bad", budget=budget))


# ---- Wilcoxon pruning of K-fold trials --------------------------------------------------------------

def test_wilcoxon_sees_each_folds_own_value_and_prunes_a_poor_trial(tmp_path):
    import optuna

    from core.study.storage import open_storage
    from tests.helpers import TINY_CONFIG, load_study

    config = {**TINY_CONFIG, "split": {"kind": "stratified_kfold", "k": 5}}
    spec = load_spec(tiny_study_spec(tmp_path, name="wil", trials=2, config=config,
                                     pruner={"name": "wilcoxon", "p_threshold": 0.5, "n_startup_steps": 2},
                                     space={"optim.lr": {"type": "categorical", "choices": [0.3, 1.0e-6]}}))
    study = optuna.create_study(study_name="wil", storage=open_storage("mlruns/optuna.journal"), direction="maximize")
    study.enqueue_trial({"optim.lr": 0.3})  # learns
    study.enqueue_trial({"optim.lr": 1.0e-6})  # barely moves: worse on every fold
    outcome = run_study(spec)
    assert (outcome.finished, outcome.pruned) == (1, 1)
    first, second = load_study("wil").trials
    fold_runs = [r for r in all_runs("wil") if r.data.tags.get("fold") and r.data.tags["trial_number"] == "0"]
    per_fold = {int(r.data.tags["fold"]): r.data.metrics["summary/final_val_acc"] for r in fold_runs}
    assert first.intermediate_values == pytest.approx(per_fold)  # each fold's value, not the running mean
    assert "wilcoxon" in second.user_attrs["prune_reason"] and len(second.intermediate_values) < 5


def test_wilcoxon_on_a_holdout_study_is_one_config_error(tmp_path):
    with pytest.raises(ConfigError, match="wilcoxon pruner compares each fold's value"):
        load_spec(tiny_study_spec(tmp_path, name="wil-h", pruner={"name": "wilcoxon"}))


# ---- the live dashboard -------------------------------------------------------------------------------

@pytest.mark.slow
def test_dashboard_serves_the_studies_with_their_mlflow_runs(tmp_path):
    import json
    import urllib.request

    from core import servers
    from tests.helpers import free_port, start_cli

    run_study(load_spec(tiny_study_spec(tmp_path, name="dash", trials=2, config=_one_epoch())))
    port = free_port()
    process = start_cli("dashboard", "--port", str(port), cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        assert servers.wait_until_answers(f"{base}/api/studies", timeout=60, process=process), process.stderr.read()
        with urllib.request.urlopen(f"{base}/api/studies", timeout=10) as response:
            (study,) = json.load(response)["study_summaries"]
        assert study["study_name"] == "dash"
        with urllib.request.urlopen(f"{base}/api/studies/{study['study_id']}", timeout=10) as response:
            detail = json.load(response)
        run_ids = {attr["value"] for trial in detail["trials"] for attr in trial["user_attrs"]
                   if attr["key"] == "mlflow_run_id"}
        assert len(run_ids) == 2 and "parent run" in detail["note"]["body"]
        with urllib.request.urlopen(f"{base}/dashboard", timeout=10) as response:
            assert b"bundle.js" in response.read()  # the UI's assets come from the wheel, no network
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.slow
def test_dashboard_refuses_a_missing_storage_and_a_taken_port(tmp_path):
    import socket

    from tests.helpers import run_cli

    result = run_cli("dashboard", "--storage", str(tmp_path / "none.journal"), cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "no Optuna storage at" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "none.journal").exists()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run_cli("dashboard", "--port", str(taken.getsockname()[1]), cwd=tmp_path, timeout=60)
    assert result.returncode == 2 and "is not free" in result.stderr


@pytest.mark.slow
def test_cli_summary_says_importances_stopping_and_refuses_bad_warm_starts(tmp_path):
    from tests.helpers import load_study, run_cli

    spec = tiny_study_spec(tmp_path, name="cli-l", config=_one_epoch(), budget={"trials": 5, "target": 0.0})
    result = run_cli("study", str(spec), "--enqueue", "optim.lr=0.05", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "parameter importance: not computed: 1 complete trials" in result.stdout
    assert "stopped by the target rule: best val_acc" in result.stdout
    again = run_cli("study", str(spec), cwd=tmp_path)
    assert again.returncode == 0 and "was stopped by its target rule" in again.stdout
    bad = run_cli("study", str(spec), "--name", "cli-m", "--enqueue", "optim.lr=5", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "outside the space" in bad.stderr
    assert len(load_study("cli-l").trials) == 1
