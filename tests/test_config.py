"""The config tree: exact flat round trip, overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core import names
from core.config import Config, ConfigError, load_config, parse_overrides
from tests.helpers import run_python

CHOICES = {"device": ["auto", "cpu"], "data.name": ["digits", "synthetic", "mnist"], "split.kind": ["holdout", "kfold"],
           "model.name": ["mlp", "lenet5", "conv1d"], "optim.name": ["sgd", "adam", "adamw"],
           "sched.name": ["none", "step", "plateau", "cosine"], "train.augment": ["none", "shift"],
           "track.visdom": ["auto", "on", "off"]}
FRACTIONS = {"data.test_fraction", "split.val_fraction", "sched.gamma"}


def value_strategy(key: str, kind):
    if key in CHOICES:
        return st.sampled_from(CHOICES[key])
    if key in FRACTIONS:
        return st.floats(0.01, 0.99)
    if key == "model.dropout":
        return st.floats(0.0, 0.95)
    if key == "data.shape":
        return st.lists(st.integers(1, 64), min_size=1, max_size=3)
    if key == "data.download":
        return st.just(False)  # valid only with an on-disk data set; its own tests are in test_download.py
    if key == "data.mirror":
        return st.sampled_from(["", "http://127.0.0.1:8000/mnist/"])
    if key == "track.metrics":
        return st.lists(st.sampled_from(names.METRICS), unique=True, max_size=3)
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(4, 10_000)
    if kind is float:
        return st.floats(1e-9, 1e6, allow_nan=False, allow_infinity=False)
    if kind is str:
        return st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
    if typing.get_origin(kind) is list:
        return st.lists(st.integers(1, 4096), max_size=4)
    raise AssertionError(f"no strategy for {key}")


def field_types() -> dict[str, object]:
    types = {}

    def walk(cls, prefix):
        for item in dataclasses.fields(cls):
            hint = typing.get_type_hints(cls)[item.name]
            if dataclasses.is_dataclass(hint):
                walk(hint, f"{prefix}{item.name}.")
            elif typing.get_origin(hint) is not dict:  # open sections (model.args) have no fixed keys
                types[f"{prefix}{item.name}"] = hint
    walk(Config, "")
    return types


FIELDS = field_types()


@st.composite
def configs(draw):
    values = {key: draw(value_strategy(key, kind)) for key, kind in FIELDS.items()}
    values["split.fold"] = draw(st.integers(0, values["split.k"] - 1))
    return Config().apply(values)


@settings(max_examples=60, deadline=None)
@given(configs())
def test_from_flat_inverts_to_flat_also_from_strings(config):
    flat = config.to_flat()
    assert Config.from_flat(flat) == config
    assert Config.from_flat({key: str(value) for key, value in flat.items()}) == config  # as MLflow returns params
    assert Config.from_flat(yaml.safe_load(yaml.safe_dump(flat, sort_keys=True))) == config  # as config.yaml
    params = config.to_params()
    assert params == {key: flat[key] for key in params} and set(params) | config.unused_keys() == set(flat)


def test_params_are_the_keys_that_apply():
    default = Config().to_params()  # SGD, holdout, no schedule, digits, the MLP
    assert {"optim.momentum", "split.val_fraction", "split.stratify", "data.test_fraction", "model.hidden"} <= \
        set(default)
    assert not {"split.k", "split.fold", "sched.step_size", "sched.gamma", "sched.patience", "train.shift",
                "early_stop.min_delta", "data.shape", "data.samples", "data.path", "data.root", "data.download",
                "data.mirror", "model.channels"} & set(default)
    other = Config().apply({"optim.name": "adam", "split.kind": "stratified_kfold", "sched.name": "plateau",
                            "train.augment": "shift", "early_stop.patience": 2, "data.name": "mnist",
                            "data.download": True, "model.name": "lenet5", "track.visdom": "off"}).to_params()
    assert {"split.k", "split.fold", "sched.gamma", "sched.patience", "train.shift", "early_stop.min_delta",
            "data.root", "data.download", "data.mirror", "model.channels"} <= set(other)
    assert not {"optim.momentum", "split.val_fraction", "split.stratify", "sched.step_size", "data.test_fraction",
                "track.visdom_url"} & set(other)
    yours = Config().apply({"model.name": "experiments.tiny_cnn:build", "model.args.width": 8}).to_params()
    assert "model.args.width" in yours and not {"model.hidden", "model.dropout", "model.batchnorm"} & set(yours)


def test_every_field_is_in_the_flat_form():
    assert set(Config().to_flat()) == set(FIELDS)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=4))
def test_override_syntax_parses_or_raises_config_error(items):
    try:
        parsed = parse_overrides(items)
    except ConfigError:
        return
    config = Config()
    try:
        config.apply(parsed).validate()
    except ConfigError:
        pass  # any other exception type fails the test


@pytest.mark.parametrize("override, words", [
    ("optim.lrr=0.1", ["optim.lrr", "optim.lr"]),
    ("modle.name=mlp", ["modle.name", "model.name"]),
    ("train.epochs=abc", ["train.epochs", "whole number"]),
    ("optim.lr=fast", ["optim.lr", "number"]),
    ("model.hidden=[a]", ["model.hidden"]),
    ("train.deterministic=maybe", ["train.deterministic", "true or false"]),
    ("train.epochs=0", ["train.epochs", "at least 1"]),
    ("train.batch_size=-1", ["train.batch_size"]),
    ("split.val_fraction=0", ["split.val_fraction"]),
    ("split.val_fraction=1.5", ["split.val_fraction"]),
    ("split.k=1", ["split.k"]),
    ("split.seed=-2", ["split.seed", "-1 (the run's seed)"]),
    ("model.dropout=1.0", ["model.dropout"]),
    ("optim.lr=0", ["optim.lr"]),
    ("optim.lr=nan", ["optim.lr", "finite"]),
    ("model.name=transformer", ["model.name", "mlp", "lenet5"]),
    ("data.name=imagenet", ["data.name", "digits", "cifar10"]),
    ("optim=0.1", ["optim", "section"]),
])
def test_bad_values_name_the_key(override, words):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_yaml_spec_then_overrides(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: {name: lenet5, hidden: [32]}\noptim: {lr: 0.2}\n")
    config = load_config(spec, ["optim.lr=0.3", "model.hidden=[8, 8]"])
    assert (config.model.name, config.model.hidden, config.optim.lr) == ("lenet5", [8, 8], 0.3)


def test_a_study_spec_config_section_is_read(tmp_path):
    spec = tmp_path / "study.yaml"
    spec.write_text("name: s\nconfig: {train: {epochs: 3}}\nspace: {}\n")
    assert load_config(spec).train.epochs == 3


@pytest.mark.parametrize("text, words", [("model: {name: mlp\n", ["malformed YAML", "line"]),
                                         ("- 1\n- 2\n", ["mapping"])])
def test_malformed_specs(tmp_path, text, words):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(spec)
    assert all(word in str(error.value) for word in words)


@pytest.mark.slow
def test_a_bad_key_fails_before_torch_loads():
    # The CLI checks the config before the heavy imports, so a typo costs a fraction of a second.
    code = ("import sys; from core.__main__ import main; rc = main(['train', 'optim.lrr=0.1']); "
            "print(rc, 'torch' in sys.modules)")
    result = run_python(code, timeout=60)
    assert result.stdout.split() == ["2", "False"], result.stderr
