"""The final phase on fresh seeds (core/study/final.py) and the nested estimate (core/study/nested.py): what they
train, what they log on the parent run (final/final.json, nested/nested.json: the report page reads them), and that
a rerun reuses what finished."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from core.__main__ import main
from core.runs.run import Run
from core.study.final import fresh_seeds, median_run
from core.study.report import BEST_MODEL_TAG
from core.study.runner import run_study
from core.study.spec import load_spec, trial_seed
from core.study.spread import shown, spread
from tests.helpers import TINY_CONFIG, all_runs, load_study, tiny_study_spec

ONE_EPOCH = {**TINY_CONFIG, "train": {**TINY_CONFIG["train"], "epochs": 1}}


def test_spread_is_the_sample_std_and_the_95_t_interval():
    values = [0.97, 0.98, 0.96, 0.975, 0.971]
    got = spread(values)
    mean, sem = sum(values) / 5, stats.sem(values)
    low, high = stats.t.interval(0.95, 4, loc=mean, scale=sem)
    assert got["n"] == 5 and math.isclose(got["mean"], mean)
    assert math.isclose(got["std"], stats.tstd(values))  # ddof=1
    assert math.isclose(got["ci_low"], low) and math.isclose(got["ci_high"], high)
    assert spread([0.5])["std"] is None and spread([0.5, 0.5])["ci_low"] == 0.5


def test_the_served_run_is_the_median_seed_the_worse_of_two_middle_ones():
    runs = [{"seed": s, "val": v, "run_id": str(s)} for s, v in [(1, 0.9), (2, 0.7), (3, 0.8), (4, 0.6)]]
    assert median_run(runs, maximize=True)["seed"] == 2  # 0.6 0.7 | 0.8 0.9: 0.7, not the flattering 0.8
    assert median_run(runs, maximize=False)["seed"] == 3  # an error: 0.9 0.8 | 0.7 0.6: 0.8
    assert median_run(runs[:3], maximize=True)["seed"] == 3


def test_fresh_seeds_skip_the_seeds_trials_used(tmp_path):
    spec = load_spec(tiny_study_spec(tmp_path, trials=1))

    class Trial:
        def __init__(self, seed):
            self.user_attrs = {"seed": seed}

    class Study:
        def get_trials(self, deepcopy=False):
            return [Trial(1001), Trial(1003)]

    assert fresh_seeds(spec, Study(), 3) == [1002, 1004, 1005]
    assert fresh_seeds(spec, Study(), 3) == fresh_seeds(spec, Study(), 3)  # a rerun trains the same seeds


def test_final_phase_trains_the_best_configurations_on_fresh_seeds_and_serves_the_median_seed_run(tmp_path):
    config = {**ONE_EPOCH, "track": {**ONE_EPOCH["track"], "log_model": True}}
    spec = load_spec(tiny_study_spec(tmp_path, trials=3, config=config, final={"top": 2, "seeds": 3}))
    outcome = run_study(spec, storage=str(tmp_path / "optuna.journal"))
    final = outcome.final
    assert json.loads(Run.of(outcome.parent_run_id, "tiny").read_text("final/final.json")) == final
    assert {"metric", "test_metric", "direction", "top", "seeds", "ranked_by", "chosen", "configurations"} <= set(final)
    assert (final["metric"], final["test_metric"], final["direction"], final["top"]) == \
        ("val_acc", "test_acc", "maximize", 2)
    study = load_study("tiny", str(tmp_path / "optuna.journal"))
    used = {trial_seed(0, t.number) for t in study.trials}
    assert len(final["seeds"]) == 3 and not used & set(final["seeds"])
    rows = final["configurations"]
    assert [row["rank"] for row in rows] == [1, 2]
    assert rows[0]["val"]["mean"] >= rows[1]["val"]["mean"]  # ranked on validation
    for row in rows:
        assert [run["seed"] for run in row["runs"]] == final["seeds"]
        assert row["val"]["n"] == 3 and row["val"]["ci_low"] <= row["val"]["mean"] <= row["val"]["ci_high"]
        assert row["params"] == study.trials[row["trial"]].params
    finals = [run for run in all_runs("tiny") if run.data.tags.get("final") == "true"]
    assert len(finals) == 6 and {run.info.status for run in finals} == {"FINISHED"}
    assert {run.data.tags["mlflow.parentRunId"] for run in finals} == {outcome.parent_run_id}
    assert {run.data.params["seed"] for run in finals} == set(map(str, final["seeds"]))
    chosen = final["chosen"]
    assert chosen["trial"] == rows[0]["trial"] and chosen["run_id"] == median_run(rows[0]["runs"], True)["run_id"]
    parent = Run.of(outcome.parent_run_id, "tiny").tags()
    assert parent[BEST_MODEL_TAG] == chosen["run_id"]  # the study serves the chosen median-seed run
    note = parent["mlflow.note.content"]  # the parent's note says what the final phase chose and serves
    assert "**Final phase:**" in note and f"chosen trial {chosen['trial']}" in note and chosen["run_id"] in note
    assert f"val_acc {shown(rows[0]['val'])}" in note

    again = run_study(spec, storage=str(tmp_path / "optuna.journal"))  # done: nothing trained, the same result
    assert again.already_done and again.final == final
    assert len([run for run in all_runs("tiny") if run.data.tags.get("final") == "true"]) == 6


def test_nested_estimate_runs_a_study_per_outer_fold_and_scores_its_selection_on_the_held_out_part(tmp_path):
    from core.study.nested import fold_spec, run_nested

    spec = load_spec(tiny_study_spec(tmp_path, trials=2, config=ONE_EPOCH))
    storage = str(tmp_path / "optuna.journal")
    outcome = run_nested(spec, 2, storage=storage)
    result = outcome.result
    assert json.loads(Run.of(outcome.parent_run_id, "tiny").read_text("nested/nested.json")) == result
    assert (result["metric"], result["outer_metric"], result["direction"], result["outer_folds"]) == \
        ("val_acc", "test_acc", "maximize", 2)
    assert [row["fold"] for row in result["folds"]] == [0, 1] and result["outer"]["n"] == 2
    runs = {run.info.run_id: run for run in all_runs("tiny")}
    for row in result["folds"]:
        study = load_study(row["study"], storage)
        assert row["study"] == fold_spec(spec, row["fold"], 2).name and len(study.trials) == 2  # budget per fold
        assert row["selected_trial"] == study.best_trial.number and row["inner_best"] == study.best_value
        assert runs[row["run_id"]].data.tags["mlflow.parentRunId"] == outcome.parent_run_id
        trial_runs = [run for run in runs.values() if run.data.tags.get("mlflow.parentRunId") == row["run_id"]]
        assert len(trial_runs) == 2
        best_run = runs[study.best_trial.user_attrs["mlflow_run_id"]]
        assert row["outer"] == best_run.data.metrics["summary/test_acc"]  # scored on the held-out outer fold
        assert best_run.data.params["split.outer_fold"] == str(row["fold"])
    assert math.isclose(result["outer"]["mean"], sum(row["outer"] for row in result["folds"]) / 2)
    assert outcome.report_page.endswith("tiny.html") and "Nested estimate tiny" in open(outcome.report_page).read()

    again = run_nested(spec, 2, storage=storage)  # finished fold studies are reused: nothing trained
    assert again.parent_run_id == outcome.parent_run_id and again.result == result
    assert len(all_runs("tiny")) == len(runs)


def test_held_out_outer_fold_stands_for_the_test_part_and_folds_partition_the_training_part():
    import numpy as np
    import torch

    from core.train import prepare
    from tests.helpers import tiny_config

    held = []
    for fold in range(3):
        prepared = prepare(tiny_config(**{"split.outer_k": 3, "split.outer_fold": fold, "split.outer_seed": 4}))
        test_x, _ = prepared.test.gather(torch.device("cpu"))
        held.append(test_x.flatten(1).numpy())
        searched = np.concatenate([prepared.train_idx, prepared.val_idx])
        assert len(searched) + len(prepared.test) == 160  # the synthetic set's training part
        assert not set(searched) & set(prepared.test_rows)  # the search never sees its held-out rows
    rows = np.concatenate(held)
    assert len(np.unique(rows, axis=0)) == 160  # the held-out parts are disjoint and cover the training part


@pytest.mark.parametrize("args, says", [
    (["--final-top", "0"], "final.top=0"),
    (["--final-seeds", "1"], "final.seeds=1"),
    (["--outer-folds", "1"], "--outer-folds=1"),
    (["--outer-folds", "2", "split.kind=kfold"], "holdout"),
    (["--outer-folds", "2", "--enqueue", "optim.lr=0.1"], "--enqueue"),
])
def test_bad_final_and_outer_folds_options_are_one_line_and_write_nothing(tmp_path, capsys, args, says):
    spec = tiny_study_spec(tmp_path, trials=1, config=ONE_EPOCH)
    assert main(["study", str(spec), *args]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and says in error[0], error
    assert not all_runs() and not (tmp_path / "mlruns" / "optuna.journal").exists()
