"""A researcher's own model, data set and metric, named by import path: every verb finds them, runs keep
their source, reproduce refuses changed code, and every kind of bad user code is one line and exit 2."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.config import Config, load_config
from core.data import from_arrays
from core.errors import ConfigError, DataError
from tests.helpers import ROOT, all_runs, run_cli, tiny_overrides

NET = '''
from torch import nn


def build(input_shape, num_classes, width=8):
    size = 1
    for n in input_shape:
        size *= n
    return nn.Sequential(nn.Flatten(), nn.Linear(size, width), nn.ReLU(), nn.Linear(width, num_classes))
'''

LOADER = '''
import numpy as np


def load(n=200, classes=3):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = (rng.normal(size=(n, 6)) + y[:, None]).astype(np.float32)
    return x, y
'''

METRIC = '''
def score(y_true, y_pred, probabilities):
    return float((y_true == y_pred).mean())
'''


def write_package(folder: Path, **modules: str) -> None:
    """A package `mylab` of the user's own modules in `folder`, the working folder of the commands."""
    package = folder / "mylab"
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))


def test_open_sections_round_trip_with_their_types():
    config = load_config(None, ["model.name=mylab.net:build", "model.args.width=64", "model.args.rate=1e-3",
                                "model.args.act=relu", "model.args.sizes=[1,2]", "model.args.on=true",
                                "track.metrics=[macro_f1, mylab.m:score]"])
    assert config.model.args == {"width": 64, "rate": 0.001, "act": "relu", "sizes": [1, 2], "on": True}
    as_params = {key: str(value) for key, value in config.to_flat().items()}  # as MLflow gives them back
    assert Config.from_flat(as_params) == config
    assert config.user_references() == ["mylab.net:build", "mylab.m:score"]


@pytest.mark.parametrize("overrides, words", [
    (["model.args.width=8"], ["model.args", "mlp"]),
    (["data.name=npz"], ["data.path"]),
    (["model.name=not a path"], ["model.name", "module:function"]),
    (["track.metrics=[f2]"], ["track.metrics", "macro_f1"]),
    (["model.name=a:b", "model.args.x.y=1"], ["open section"]),
    (["track.metrics=[macro_f1, a:macro_f1]"], ["share a name"]),
])
def test_config_checks_of_user_parts_import_nothing(overrides, words):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert all(word in str(error.value) for word in words)


@pytest.mark.parametrize("arrays, words", [
    ((np.zeros((5, 3)), np.zeros(4, dtype=int)), ["5 samples", "4 labels"]),
    ((np.zeros((4, 3)), np.array([0, 1, np.nan, 1])), ["NaN"]),
    ((np.zeros((4, 3)), np.zeros((4, 2, 2))), ["(N,)", "(N, D)"]),
    ((np.zeros(4), np.zeros(4, dtype=int)), ["first axis"]),
])
def test_bad_arrays_are_one_clear_error(arrays, words):
    """What no task takes; targets that do not fit the run's task are tests/test_tasks.py's."""
    with pytest.raises(DataError) as error:
        from_arrays("mine", *arrays)
    assert all(word in str(error.value) for word in words)


def test_arrays_become_a_dataset_like_the_built_ins():
    images = np.random.default_rng(0).integers(0, 256, (40, 6, 6), dtype=np.uint8)
    dataset = from_arrays("mine", images, np.arange(40) % 4)
    assert dataset.is_image and dataset.input_shape == (1, 6, 6) and dataset.num_classes == 4
    assert len(dataset.train_y) == 32 and len(dataset.test_y) == 8  # the fixed stratified test part


def write_npz(path: Path, with_test: bool = True, **drop) -> None:
    rng = np.random.default_rng(1)
    y = np.arange(240) % 3
    x = (rng.normal(size=(240, 5)) + y[:, None]).astype(np.float32)
    arrays = {"x_train": x[:200], "y_train": y[:200]}
    if with_test:
        arrays.update(x_test=x[200:], y_test=y[200:])
    np.savez(path, **{key: value for key, value in arrays.items() if key not in drop})


def write_image_folder(root: Path, with_test: bool = True) -> None:
    rng = np.random.default_rng(2)
    for part in (["", "test"] if with_test else [""]):
        for label, name in enumerate(["cat", "dog"]):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(12 if part == "" else 4):
                pixels = rng.integers(0, 80, (10, 10, 3)) + 150 * label  # one class dark, one bright
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{index}.png")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["npz", "image_folder"])
def test_npz_and_image_folder_train_and_evaluate(tmp_path, kind):
    if kind == "npz":
        write_npz(tmp_path / "mine.npz")
        data = ["data.name=npz", "data.path=mine.npz"]
    else:
        write_image_folder(tmp_path / "pictures")
        data = ["data.name=image_folder", "data.root=pictures", "data.resize=8"]
    trained = run_cli("train", *tiny_overrides(**{"track.log_model": True, "train.epochs": 10}), *data, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (run,) = all_runs("train")
    assert run.info.status == "FINISHED" and run.data.metrics["summary/test_acc"] > 0.6
    evaluated = run_cli("evaluate", run.info.run_id, cwd=tmp_path)
    assert evaluated.returncode == 0 and "match" in evaluated.stdout, evaluated.stdout + evaluated.stderr


@pytest.mark.slow
def test_user_model_data_and_metric_in_every_verb_and_reproduce_guards_the_code(tmp_path):
    write_package(tmp_path, net=NET, data=LOADER, m=METRIC)
    mine = ["model.name=mylab.net:build", "model.args.width=12", "data.name=mylab.data:load", "data.args.n=150",
            "track.metrics=[macro_f1, mylab.m:score]", "train.deterministic=true", "track.log_model=true"]
    trained = run_cli("train", *tiny_overrides(), *mine, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    (run,) = all_runs("train")
    tags, metrics = run.data.tags, run.data.metrics
    assert {"code.mylab/net.py", "code.mylab/data.py", "code.mylab/m.py", "code_git"} <= set(tags)
    assert {"summary/final_val_macro_f1", "summary/test_macro_f1", "summary/final_val_score",
            "summary/test_score"} <= set(metrics)
    assert metrics["summary/test_score"] == pytest.approx(metrics["summary/test_acc"])  # the user's metric is accuracy
    assert run.data.params["model.args.width"] == "12" and run.data.params["data.args.n"] == "150"

    again = run_cli("reproduce", run.info.run_id, cwd=tmp_path)
    assert again.returncode == 0 and "bit-identical" in again.stdout, again.stdout + again.stderr
    net = tmp_path / "mylab" / "net.py"
    net.write_text(net.read_text() + "\n# edited after the run\n")
    refused = run_cli("reproduce", run.info.run_id, cwd=tmp_path)
    assert refused.returncode == 2 and str(net) in refused.stderr and len(refused.stderr.splitlines()) == 1
    assert run_cli("evaluate", run.info.run_id, cwd=tmp_path).returncode == 2
    allowed = run_cli("reproduce", run.info.run_id, "--allow-code-change", cwd=tmp_path)
    assert allowed.returncode == 0 and "code changed" in allowed.stderr, allowed.stdout + allowed.stderr


@pytest.mark.slow
def test_the_example_study_runs_in_two_workers_and_a_trial_reproduces_bit_for_bit(tmp_path):
    spec = str(ROOT / "studies" / "tiny_cnn.yaml")
    study = run_cli("study", spec, "train.epochs=2", "track.visdom=off", "--trials", "4", "--workers", "2",
                    cwd=tmp_path)
    assert study.returncode == 0, study.stderr
    trials = [r for r in all_runs("tiny_cnn") if "trial_number" in r.data.tags]
    assert len(trials) == 4 and all(r.info.status == "FINISHED" for r in trials)
    assert all("summary/final_val_macro_f1" in r.data.metrics and "code.experiments/tiny_cnn.py" in r.data.tags
               for r in trials)
    again = run_cli("reproduce", trials[0].info.run_id, cwd=tmp_path)
    assert again.returncode == 0 and "bit-identical" in again.stdout, again.stdout + again.stderr


BAD_CODE = {
    "syntax error": ({"net": "def build(:\n"}, ["model.name=mylab.net:build"], ["net.py", "line 1", "SyntaxError"]),
    "import error inside": ({"net": "import no_such_package_here\n"}, ["model.name=mylab.net:build"],
                            ["net.py", "line 1", "no_such_package_here"]),
    "no such module": ({}, ["model.name=mylab.nothing:build"], ["no module named", "mylab.nothing"]),
    "missing attribute": ({"net": NET}, ["model.name=mylab.net:make"], ["no attribute", "make"]),
    "builder raises": ({"net": "def build(shape, classes, **args):\n    raise ValueError('too wide')\n"},
                       ["model.name=mylab.net:build"], ["builder raised ValueError", "too wide"]),
    "builder returns no module": ({"net": "def build(shape, classes):\n    return 42\n"},
                                  ["model.name=mylab.net:build"], ["returned a int", "nn.Module"]),
    "loader arrays disagree": ({"data": "import numpy as np\ndef load():\n    return np.zeros((5, 2)), [0, 1]\n"},
                               ["data.name=mylab.data:load"], ["5 samples", "2 labels"]),
    "non-integer labels": ({"data": "import numpy as np\ndef load():\n    return np.zeros((4, 2)), [0, 1.5, 1, 0]\n"},
                           ["data.name=mylab.data:load"], ["real numbers", "task=regression"]),
    "negative labels": ({"data": "import numpy as np\ndef load():\n    return np.zeros((4, 2)), [0, -1, 1, 0]\n"},
                        ["data.name=mylab.data:load"], ["0..C-1", "got -1..1"]),
    "metric returns text": ({"m": "def score(y, p, proba):\n    return 'good'\n"},
                            ["track.metrics=[mylab.m:score]"], ["mylab.m:score", "not a finite number"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_CODE))
def test_bad_user_code_is_one_line_exit_2_and_no_run(tmp_path, case):
    modules, overrides, words = BAD_CODE[case]
    write_package(tmp_path, **modules)
    result = run_cli("train", *tiny_overrides(), *overrides, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and all(word in result.stderr for word in words), \
        result.stderr
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["empty image folder", "npz without x_train"])
def test_bad_data_files_are_one_line_exit_2_and_no_run(tmp_path, case):
    if case == "empty image folder":
        (tmp_path / "pictures" / "cat").mkdir(parents=True)
        data, words = ["data.name=image_folder", "data.root=pictures"], ["no image files"]
    else:
        write_npz(tmp_path / "mine.npz", x_train=True)
        data, words = ["data.name=npz", "data.path=mine.npz"], ["no x_train"]
    result = run_cli("train", *tiny_overrides(), *data, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert all(word in result.stderr for word in words), result.stderr
    assert not (tmp_path / "mlruns").exists()
