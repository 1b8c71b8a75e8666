"""Studies that learn more per trial: importances, warm starts, stopping rules, Wilcoxon pruning, the dashboard."""

from __future__ import annotations

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
