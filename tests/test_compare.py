"""Overfitting remedies on the same repeated folds: run hierarchy, corrected statistics, artifacts, bad specs."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from core.compare import (
    BASELINE,
    FoldResult,
    corrected_t_test,
    fingerprint,
    fold_config,
    holm,
    load_experiment,
    markdown_report,
    plan_jobs,
    run_comparison,
    summarize,
)
from core.config import Config
from core.errors import ConfigError
from core.runs.logged import logged_config
from tests.helpers import TINY_CONFIG, all_runs, mlflow_client, run_cli


def write_spec(folder, **changes) -> str:
    spec = {"name": "tiny compare", "seed": 0, "k": 3, "repeats": 2,
            "config": {**TINY_CONFIG, "train": {"epochs": 2, "batch_size": 32}},
            "remedies": {"baseline": {}, "dropout": {"model.dropout": 0.5}, "l2": {"optim.weight_decay": 0.01}},
            "sweeps": {"l2": {"key": "optim.weight_decay", "values": [0.001, 0.01, 0.1]}}}
    spec.update(changes)
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def fold(train: float, val: float, test: float | None = None) -> FoldResult:
    return FoldResult(train, val, val if test is None else test, 3, 1.0, [], 200, 100)


def test_corrected_t_test_on_numbers_worked_out_by_hand():
    # Worked out once with plain numpy, not SciPy: J = 6 differences d, n_val / n_train = 1/2 (3 folds);
    # mean = d.sum() / 6 = 0.0216667; var = ((d - mean) ** 2).sum() / 5 = 0.000536667;
    # se = sqrt(var * (1/6 + 1/2)) = 0.0189150; t = mean / se = 1.145474 on 5 degrees of freedom;
    # p = 2 * (the t density c * (1 + x^2/5) ** -3, c = gamma(3) / (sqrt(5 pi) gamma(2.5)), integrated with the
    # trapezoid rule from t to 2000) = 0.303862; the 97.5% point, by bisection on that tail, = 2.570582 (2.571 in
    # printed t tables), so the 95% CI is mean ± 2.570582 * se = [-0.026956, 0.070289].
    differences = [0.02, 0.05, -0.01, 0.04, 0.03, 0.00]
    test = corrected_t_test(differences, 0.5)
    assert test.difference == pytest.approx(0.0216667, abs=1e-6)
    assert test.p == pytest.approx(0.303862, abs=1e-5)
    assert (test.low, test.high) == (pytest.approx(-0.026956, abs=1e-5), pytest.approx(0.070289, abs=1e-5))
    # Without the correction (ratio 0: the plain paired t-test) the same numbers give p = 0.0706.
    assert corrected_t_test(differences, 0.0).p == pytest.approx(0.070566, abs=1e-5)
    assert corrected_t_test([0.0, 0.0, 0.0], 0.5).p == 1.0 and corrected_t_test([0.1, 0.1], 0.5).p == 0.0


def test_holm_on_numbers_worked_out_by_hand():
    # Sorted p times the tests left: 0.01 * 4 = 0.04, 0.03 * 3 = 0.09, 0.04 * 2 = 0.08 -> 0.09 (never below the one
    # before it), 0.20 * 1 = 0.20; capped at 1.
    assert holm([0.01, 0.04, 0.03, 0.20]) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0]) and holm([]) == []


def test_summary_rows_gaps_ranks_and_adjusted_tests():
    folds = {BASELINE: [fold(1.0, 0.8, 0.90), fold(1.0, 0.9, 0.90), fold(1.0, 0.85, 0.90)],
             "better": [fold(0.95, 0.9, 0.88), fold(0.96, 0.92, 0.88), fold(0.96, 0.90, 0.88)],
             "worse": [fold(1.0, 0.7, 0.91), fold(1.0, 0.88, 0.91), fold(1.0, 0.8, 0.91)]}
    rows = {row["remedy"]: row for row in summarize(folds)}
    assert rows[BASELINE]["gap"] == pytest.approx(0.15) and rows["better"]["gap"] == pytest.approx(0.05)
    assert [rows[n]["rank"] for n in ("better", BASELINE, "worse")] == [1, 2, 3]
    assert [rows[n]["test_rank"] for n in ("worse", BASELINE, "better")] == [1, 2, 3]
    assert rows["better"]["val_std"] == pytest.approx(np.std([0.9, 0.92, 0.90], ddof=1))
    better = corrected_t_test([0.1, 0.02, 0.05], 100 / 200)
    assert (rows["better"]["val_diff"], rows["better"]["val_diff_low"], rows["better"]["val_p"]) == pytest.approx(
        (better.difference, better.low, better.p))
    assert [rows[n]["val_p_holm"] for n in ("better", "worse")] == pytest.approx(
        holm([rows["better"]["val_p"], rows["worse"]["val_p"]]))
    assert np.isnan(rows[BASELINE]["val_p"])
    # Better on validation but worse on the test part (and the reverse) is flagged.
    assert rows["better"]["disagrees"] and rows["worse"]["disagrees"] and not rows[BASELINE]["disagrees"]


def test_figures_take_eight_remedies_and_a_sweep():
    from core import report

    history = [{"train_acc": 0.5 + 0.01 * e, "val_acc": 0.45 + 0.01 * e} for e in range(20)]
    folds = {name: [FoldResult(0.9, 0.8 + 0.01 * i, 0.8, 20, 1.0, history, 200, 100) for i in range(4)]
             for name in [BASELINE, "a", "b", "c", "d", "e", "f", "g"]}
    assert len([a for a in report.remedy_curves(folds).axes if a.get_visible()]) == 7
    assert len(report.fold_box_plot(folds).axes) == 3
    figure = report.strength_curve("a", "reg.l1", [(1e-5, [0.8, 0.9]), (1e-3, [0.7, 0.75])], [0.8, 0.85])
    assert figure.axes[0].get_xscale() == "log"


@pytest.mark.slow
def test_comparison_logs_the_hierarchy_and_artifacts_and_repeats_exactly(tmp_path):
    spec = load_experiment(write_spec(tmp_path))
    first = run_comparison(spec)
    runs = all_runs("tiny compare")
    parents = [r for r in runs if r.data.tags.get("kind") == "comparison"]
    remedies = [r for r in runs if r.data.tags.get("kind") == "remedy"]
    folds = [r for r in runs if "fold" in r.data.tags]
    # Three remedies and two new sweep points (weight decay 0.01 is the l2 remedy: its folds are reused).
    assert len(parents) == 1 and len(remedies) == 3 + 2 and len(folds) == 5 * 2 * 3
    assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in remedies)
    remedy_ids = {r.info.run_id for r in remedies}
    assert all(r.data.tags["mlflow.parentRunId"] in remedy_ids for r in folds)
    assert all(r.info.status == "FINISHED" for r in runs)
    artifacts = {a.path for a in mlflow_client().list_artifacts(first.parent_run_id)}
    assert {"comparison.csv", "comparison.md", "curves.png", "fold_scores.png", "strength_l2.png",
            "sweep_l2.md"} <= artifacts
    assert [(p.value, p.run) for p in first.sweeps["l2"]] == [(0.001, "l2@0.001"), (0.01, "l2"), (0.1, "l2@0.1")]
    assert first.sweeps["l2"][1].folds is first.folds["l2"]
    assert {"l2.val_diff", "l2.val_diff_low", "l2.val_diff_high", "l2.val_p", "l2.val_p_holm",
            "warm_up_seconds"} <= set(parents[0].data.metrics)

    # The same folds and seeds for every remedy, a new partition per repeat, and each fold run's config rebuilds it;
    # its params also say where it sits (chart axes and group keys).
    at = {(r.data.tags["remedy"], r.data.tags["repeat"], r.data.tags["fold"]): r for r in folds}
    params = {place: run.data.params for place, run in at.items()}
    dropout = next(remedy for remedy in spec.remedies if remedy.name == "dropout")
    assert Config.from_flat(logged_config(at[("dropout", "1", "2")])) == fold_config(dropout.config, 2, 1)
    assert {k: params[("dropout", "1", "2")][k] for k in ("remedy", "repeat", "fold")} == \
        {"remedy": "dropout", "repeat": "1", "fold": "2"}
    for key in ("seed", "split.kind", "split.k", "split.fold"):
        assert params[("baseline", "1", "2")][key] == params[("dropout", "1", "2")][key]
    assert params[("baseline", "0", "2")]["seed"] == "0" and params[("baseline", "1", "2")]["seed"] == "1"

    text = markdown_report(first)
    assert "Nadeau-Bengio" in text and "Holm" in text and "6 folds: 2 repeats of 3-fold" in text
    assert "| optim.weight_decay | val acc |" in text and "| 0.01 |" in text

    second = run_comparison(load_experiment(write_spec(tmp_path)))
    def without_time(table):
        return [{k: v for k, v in row.items() if not k.startswith("seconds")} for row in table]
    assert without_time(second.table) == without_time(first.table)


@pytest.mark.parametrize("change, words", [
    ({"remedies": {"baseline": {}, "l1": {"reg.l11": 0.1}}}, ["l1", "reg.l11"]),
    ({"remedies": {"baseline": {}, "same": {"optim.lr": 0.05}}}, ["same", "changes nothing"]),
    ({"remedies": {"dropout": {"model.dropout": 0.5}}}, ["baseline"]),
    ({"sweeps": {"nothing": {"key": "reg.l1", "values": [0.1]}}}, ["nothing"]),
    ({"repeats": 0}, ["repeats", "at least 1"]),
    ({"repeats": "two"}, ["repeats", "'two'"]),
    ({"k": 1}, ["k", "at least 2"]),
])
def test_bad_specs_name_the_remedy_or_key(tmp_path, change, words):
    with pytest.raises(ConfigError) as error:
        load_experiment(write_spec(tmp_path, **change))
    assert all(word in str(error.value) for word in words) and "\n" not in str(error.value)


def test_command_line_seed_wins_over_the_spec_and_split_overrides_are_refused(tmp_path):
    spec = load_experiment(write_spec(tmp_path), ["seed=7"])
    assert spec.seed == 7 and all(remedy.config.seed == 7 for remedy in spec.remedies)
    assert load_experiment(write_spec(tmp_path)).seed == 0
    with pytest.raises(ConfigError, match="split"):
        load_experiment(write_spec(tmp_path), ["split.k=5"])


def test_the_command_line_shortens_a_comparison_with_the_spec_keys_checks(tmp_path, capsys):
    from core.__main__ import main

    spec = load_experiment(write_spec(tmp_path), (), {"k": 2, "repeats": 1, "remedies": ["l2"]})
    assert (spec.k, spec.repeats, [r.name for r in spec.remedies]) == (2, 1, [BASELINE, "l2"])
    assert all(remedy.config.split.k == 2 for remedy in spec.remedies) and list(spec.sweeps) == ["l2"]
    assert load_experiment(write_spec(tmp_path), (), {"remedies": ["dropout"]}).sweeps == {}
    assert load_experiment(write_spec(tmp_path), (), {"k": None}).k == 3  # not given: the spec's
    for options, words in ((["--remedies", "l2,l3"], ["--remedies", "'l3'", "dropout"]),
                           (["--k", "1"], ["k", "at least 2"]), (["--repeats", "0"], ["repeats", "at least 1"]),
                           (["--k", "two"], ["--k", "two"])):
        try:
            code = main(["compare", write_spec(tmp_path), *options])
        except SystemExit as usage:  # argparse's own: not a whole number
            code = usage.code
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and all(word in err for word in words), err
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_cli_bad_input_logs_nothing_and_good_input_prints_the_tables(tmp_path):
    bad = run_cli("compare", write_spec(tmp_path, repeats=0), cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "mlruns").exists()
    good = run_cli("compare", write_spec(tmp_path, repeats=1), "train.epochs=1", cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    assert "| rank | remedy |" in good.stdout and "dropout" in good.stdout and "comparison run:" in good.stdout
    assert "p (Holm)" in good.stdout and "| optim.weight_decay | val acc |" in good.stdout


def test_the_fingerprint_that_resumes_a_comparison_follows_spec_overrides_and_user_code(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    net = tmp_path / "resume_fingerprint_net.py"
    net.write_text("import torch\n\ndef build(shape, classes):\n    return torch.nn.Linear(64, classes)\n")

    def mark(*overrides: str) -> str:
        spec = load_experiment(write_spec(tmp_path), ["model.name=resume_fingerprint_net:build", *overrides])
        return fingerprint(spec, plan_jobs(spec)[0])

    first = mark()
    assert mark() == first and mark("optim.lr=0.07") != first
    net.write_text(net.read_text() + "# changed\n")  # the same config, other code: another comparison
    assert mark() != first
