"""Overfitting remedies on the same folds: run hierarchy, paired statistics, artifacts, bad specs."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from scipy import stats

from core.compare import BASELINE, FoldResult, load_experiment, paired_test, run_comparison, summarize
from core.errors import ConfigError
from tests.helpers import TINY_CONFIG, all_runs, mlflow_client, run_cli


def write_spec(folder, **changes) -> str:
    spec = {"name": "tiny compare", "seed": 0, "k": 3,
            "config": {**TINY_CONFIG, "train": {"epochs": 2, "batch_size": 32}},
            "remedies": {"baseline": {}, "dropout": {"model.dropout": 0.5}, "l2": {"optim.weight_decay": 0.01}},
            "sweeps": {"l2": {"key": "optim.weight_decay", "values": [0.001, 0.1]}}}
    spec.update(changes)
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def fold(train: float, val: float) -> FoldResult:
    return FoldResult(train, val, val, 3, 1.0, [])


def test_paired_statistics_on_known_numbers():
    baseline, remedy = [0.80, 0.82, 0.78, 0.81], [0.85, 0.86, 0.80, 0.86]
    p_value, effect = paired_test(remedy, baseline)
    differences = np.subtract(remedy, baseline)
    assert p_value == pytest.approx(stats.ttest_rel(remedy, baseline).pvalue)
    assert effect == pytest.approx(differences.mean() / differences.std(ddof=1))
    assert paired_test(baseline, baseline) == (1.0, 0.0)


def test_summary_rows_gaps_and_ranks():
    folds = {BASELINE: [fold(1.0, 0.8), fold(1.0, 0.9)], "better": [fold(0.95, 0.9), fold(0.96, 0.92)]}
    rows = {row["remedy"]: row for row in summarize(folds)}
    assert rows[BASELINE]["gap"] == pytest.approx(0.15) and rows["better"]["gap"] == pytest.approx(0.045)
    assert rows["better"]["rank"] == 1 and rows[BASELINE]["rank"] == 2
    assert rows["better"]["val_acc_std"] == pytest.approx(np.std([0.9, 0.92], ddof=1))


def test_comparison_logs_the_hierarchy_and_artifacts_and_repeats_exactly(tmp_path):
    spec = load_experiment(write_spec(tmp_path))
    first = run_comparison(spec)
    runs = all_runs("tiny compare")
    parents = [r for r in runs if r.data.tags.get("kind") == "comparison"]
    remedies = [r for r in runs if r.data.tags.get("kind") == "remedy"]
    folds = [r for r in runs if "fold" in r.data.tags]
    assert len(parents) == 1 and len(remedies) == 3 + 2 and len(folds) == 5 * 3
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in remedies)
    remedy_ids = {r.info.run_id for r in remedies}
    assert all(r.data.tags["mlflow.parentRunId"] in remedy_ids for r in folds)
    assert all(r.info.status == "FINISHED" for r in runs)
    artifacts = {a.path for a in mlflow_client().list_artifacts(first.parent_run_id)}
    assert {"comparison.csv", "comparison.md", "curves.png", "fold_scores.png", "strength_l2.png"} <= artifacts
    assert [value for value, _, _ in first.sweeps["l2"]] == [0.001, 0.1]

    # The same folds for every remedy: each fold run of a remedy saw the same split as the baseline's.
    fingerprints = {(r.data.tags["remedy"], r.data.tags["fold"]): r.data.params["split.fold"] for r in folds}
    assert fingerprints[("baseline", "1")] == fingerprints[("dropout", "1")] == "1"

    second = run_comparison(load_experiment(write_spec(tmp_path)))
    without_time = lambda table: [{k: v for k, v in row.items() if k != "seconds"} for row in table]  # noqa: E731
    assert without_time(second.table) == without_time(first.table)


@pytest.mark.parametrize("change, words", [
    ({"remedies": {"baseline": {}, "l1": {"reg.l11": 0.1}}}, ["l1", "reg.l11"]),
    ({"remedies": {"baseline": {}, "same": {"optim.lr": 0.05}}}, ["same", "changes nothing"]),
    ({"remedies": {"dropout": {"model.dropout": 0.5}}}, ["baseline"]),
    ({"sweeps": {"nothing": {"key": "reg.l1", "values": [0.1]}}}, ["nothing"]),
])
def test_bad_specs_name_the_remedy(tmp_path, change, words):
    with pytest.raises(ConfigError) as error:
        load_experiment(write_spec(tmp_path, **change))
    assert all(word in str(error.value) for word in words)


@pytest.mark.slow
def test_cli_bad_input_logs_nothing_and_good_input_prints_the_table(tmp_path):
    bad = run_cli("compare", write_spec(tmp_path, remedies={"baseline": {}, "x": {"optim.lr": 0.05}}), cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "mlruns").exists()
    good = run_cli("compare", write_spec(tmp_path, sweeps={}), "train.epochs=1", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "| rank | remedy |" in good.stdout and "dropout" in good.stdout and "comparison run:" in good.stdout
