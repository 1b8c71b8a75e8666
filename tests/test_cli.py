"""The command line a newcomer meets: overrides anywhere, `keys`, and the examples in --help."""

from __future__ import annotations

import argparse

import pytest

from core.__main__ import VERBS, build_parser, main, parse_args
from core.commands import keys
from core.config import Config, descriptions, valid_keys
from core.signals import Terminated
from tests.helpers import end_run, run_cli, start_run


@pytest.mark.parametrize("argv, dest, expected", [
    (["study", "s.yaml", "--trials", "3", "train.epochs=2"], "overrides", ["train.epochs=2"]),
    (["study", "s.yaml", "seed=1", "--trials", "3", "train.epochs=2"], "overrides", ["seed=1", "train.epochs=2"]),
    (["study", "--trials", "3", "s.yaml", "seed=1"], "overrides", ["seed=1"]),
    (["run", "--trials", "2", "seed=1", "--workers", "2", "train.epochs=2"], "overrides", ["seed=1", "train.epochs=2"]),
    (["compare", "e.yaml", "seed=1"], "overrides", ["seed=1"]),
])
def test_overrides_are_taken_before_and_after_options(argv, dest, expected):
    args = parse_args(build_parser(), argv)
    assert getattr(args, dest) == expected


def test_unknown_options_and_stray_overrides_are_one_line_errors(capsys):
    for argv in (["train", "seed=1", "--bogus"], ["keys", "seed=1"], ["reproduce", "abc", "seed=1"]):
        with pytest.raises(SystemExit) as stop:
            parse_args(build_parser(), argv)
        assert stop.value.code == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_study_usage_names_one_spec_and_every_help_ends_with_examples():
    result = run_cli("study", "--help")
    usage = result.stdout.split("\n\n")[0]
    assert usage.count("SPEC") == 1, usage
    for verb in VERBS:
        text = run_cli(verb, "--help").stdout
        tail = text.rsplit("examples:", 1)[1].strip().splitlines()
        assert 2 <= len(tail) <= 3 and all("python -m core" in line for line in tail), (verb, tail)


def test_keys_show_type_choices_description_and_the_widths_used():
    about = descriptions()
    assert set(valid_keys()) - set(about) == set(), "every key needs a description in its declaration"
    table = {key: (default, kind, text) for key, default, kind, text in keys.rows()}
    assert table["optim.name"][1] == "text: sgd | adam | adamw"
    assert table["optim.lr"] == ("0.05", "number: > 0", "learning rate")
    assert table["optim.momentum"][2].endswith("(used when optim.name is sgd)")
    assert table["split.seed"][1] == "int: in -1..2147483647" and table["sched.gamma"][1] == "number: in (0, 1)"
    assert "[200, 200]" in table["model.hidden"][0]  # the MLP is 784-200-200-10 by default
    assert table["model.name"][1].endswith("| module:function")
    assert len(table) == len(Config().to_flat())


def test_keys_list_the_study_and_experiment_spec_keys_their_loaders_take(capsys):
    from core.compare import SPEC_KEYS
    from core.study.spec import BUDGET_KEYS, SECTIONS

    assert keys.main(argparse.Namespace(section="study")) == 0
    study = capsys.readouterr().out
    assert "budget.trials = 30\n    >= 1." in study and "pruner.name = 'median'\n    median | " in study
    listed = {line.split(" = ")[0] for line in study.splitlines() if " = " in line and not line.startswith(" ")}
    assert {key.split(".")[0] for key in listed} == set(SECTIONS)
    assert {f"budget.{key}" for key in BUDGET_KEYS} <= listed
    assert keys.main(argparse.Namespace(section="experiment")) == 0
    experiment = capsys.readouterr().out
    assert "k = 5\n    >= 2." in experiment and "repeats = 3\n    >= 1." in experiment
    assert {line.split(" = ")[0].split(".")[0] for line in experiment.splitlines() if " = " in line
            and not line.startswith(" ")} == set(SPEC_KEYS)


def test_ui_points_at_the_last_study_or_comparison_not_the_newest_experiment():
    import time

    from core.commands.ui import last_experiment_id
    from core.tracking import mlflow_store

    assert last_experiment_id() is None
    for experiment, tags in (("old study", {"study": "old study"}), ("comparison", {"kind": "comparison"}),
                             ("a study", {"study": "a study"}), ("train", {})):
        end_run(start_run(experiment, "run", tags), "FINISHED")
        time.sleep(0.01)  # distinct start times
    assert last_experiment_id() == mlflow_store.experiment_id("a study")


@pytest.mark.parametrize("stop, said", [(KeyboardInterrupt(), "stopped by Ctrl-C (SIGINT)"),
                                        (Terminated(), "stopped by SIGTERM")])
def test_a_stop_names_its_signal(monkeypatch, capsys, stop, said):
    def stopped(args):
        raise stop
    monkeypatch.setattr(keys, "main", stopped)
    assert main(["keys"]) == 128 + getattr(stop, "signum", 2)
    assert capsys.readouterr().err == f"{said}; finished work is kept\n"
