"""Malformed inputs: one line on stderr, exit code 2, and nothing created (no run, trial, study or file)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import run_cli, tiny_overrides, tiny_study_spec

pytestmark = pytest.mark.slow  # each case starts the CLI (a few seconds of imports)

TINY = tiny_overrides(**{"train.epochs": 1})


def write(folder: Path, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def spec_with(folder: Path, **sections) -> str:
    return str(tiny_study_spec(folder, name="bad", **sections))


CASES = {
    "broken YAML": lambda d: ["train", write(d, "broken.yaml", "model: {name: mlp\n  hidden: [1,")] + TINY,
    "YAML that is not a mapping": lambda d: ["train", write(d, "list.yaml", "- 1\n- 2\n")],
    "spec file missing": lambda d: ["train", str(d / "nowhere.yaml")],
    "unknown key": lambda d: ["train", "optim.lrr=0.1"] + TINY,
    "unknown section": lambda d: ["train", "optimizer.lr=0.1"] + TINY,
    "wrong type": lambda d: ["train"] + TINY + ["train.epochs=many"],
    "non-numeric override": lambda d: ["train", "optim.lr=fast"] + TINY,
    "override without =": lambda d: ["train"] + TINY + ["optim.lr"],
    "zero epochs": lambda d: ["train"] + TINY + ["train.epochs=0"],
    "negative batch size": lambda d: ["train"] + TINY + ["train.batch_size=-1"],
    "val fraction above 1": lambda d: ["train"] + TINY + ["split.val_fraction=1.5"],
    "val fraction of 0": lambda d: ["train"] + TINY + ["split.val_fraction=0"],
    "k below 2": lambda d: ["train"] + TINY + ["split.kind=kfold", "split.k=1"],
    "k above the samples": lambda d: ["train"] + TINY + ["split.kind=kfold", "split.k=500", "split.fold=0"],
    "dropout of 1": lambda d: ["train"] + TINY + ["model.dropout=1.0"],
    "unknown model": lambda d: ["train"] + TINY + ["model.name=transformer"],
    "unknown data set": lambda d: ["train"] + TINY + ["data.name=imagenet"],
    "missing data files": lambda d: ["train", "data.name=mnist", f"data.root={d / 'empty'}", "track.visdom=off"],
    "model too deep for its input": lambda d: ["train"] + TINY + ["model.name=alexnet_cifar"],
    "unsupported tracking URI": lambda d: ["train"] + TINY,  # with MLFLOW_TRACKING_URI=ftp://... (ENV)
    "bad storage URL": lambda d: ["study", spec_with(d), "--storage", "foo://nowhere"],
    "unreachable storage": lambda d: ["study", spec_with(d), "--storage", "postgresql://user@127.0.0.1:1/optuna"],
    "unknown sampler": lambda d: ["study", spec_with(d, sampler={"name": "bayes"})],
    "unknown pruner": lambda d: ["study", spec_with(d, pruner={"name": "early"})],
    "low above high": lambda d: ["study", spec_with(d, space={"optim.lr": {"type": "float", "low": 1, "high": 0.1}})],
    "log with low 0": lambda d: ["study", spec_with(d, space={"optim.lr": {"type": "float", "low": 0, "high": 1,
                                                                           "log": True}})],
    "empty categorical": lambda d: ["study", spec_with(d, space={"optim.name": {"type": "categorical",
                                                                                "choices": []}})],
    "unknown parameter": lambda d: ["study", spec_with(d, space={"optim.learning_rate": {"type": "float", "low": 0.1,
                                                                                         "high": 1}})],
    "zero trials": lambda d: ["study", spec_with(d), "--trials", "0"],
    "non-numeric trials": lambda d: ["study", spec_with(d), "--trials", "ten"],
    "final top of 0": lambda d: ["study", spec_with(d), "--final-top", "0"],
    "one final seed": lambda d: ["study", spec_with(d, final={"top": 2, "seeds": 1})],
    "unknown final key": lambda d: ["study", spec_with(d, final={"best": 2})],
    "final of several objectives": lambda d: ["study", spec_with(d, objective={
        "metrics": ["val_acc", "parameters"], "directions": ["maximize", "minimize"]}), "--final-top", "2"],
    "one outer fold": lambda d: ["study", spec_with(d), "--outer-folds", "1"],
    "more outer folds than samples": lambda d: ["study", spec_with(d), "--outer-folds", "500"],
    "outer folds of a K-fold study": lambda d: ["study", spec_with(d), "--outer-folds", "3", "split.kind=kfold"],
    "unknown verb": lambda d: ["fly"],
    "port out of range": lambda d: ["ui", "--port", "70000"],
}
ENV = {"unsupported tracking URI": {"MLFLOW_TRACKING_URI": "ftp://example.invalid/mlflow"}}


def listing(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, case):
    args = CASES[case](tmp_path)
    before = listing(tmp_path)
    result = run_cli(*args, cwd=tmp_path, timeout=120, **ENV.get(case, {}))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    assert len(lines) == 1, (case, result.stderr)
    assert lines[0].startswith("error: ")
    assert listing(tmp_path) == before, f"{case}: created {listing(tmp_path) - before}"


def test_occupied_port_is_one_line_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("ui", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "not free" in result.stderr
