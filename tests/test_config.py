"""The config tree: exact flat round trip, overrides, and errors that name the key."""

from __future__ import annotations

import typing

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core import names
from core.config import Config, ConfigError, declarations, is_valid_key, key_type, load_config, parse_overrides
from core.schema import Range, at_least
from tests.helpers import run_python

DECLARED = declarations()  # every key's type, choices and range: the fuzzing draws from these, not from a copy


def value_strategy(key: str):
    """Valid values of one key, from its declaration alone: a new choice or a changed range is fuzzed as it is."""
    declared, kind = DECLARED[key], key_type(key)
    if typing.get_origin(kind) is list:
        low, high = declared.items or (0, 4)
        item = item_strategy(typing.get_args(kind)[0], declared)
        return st.lists(item, min_size=low, max_size=high, unique=bool(declared.choices))
    return item_strategy(kind, declared)


def item_strategy(kind, declared):
    if declared.choices:  # the user's own code (module:function) where the key takes it
        return st.sampled_from([*declared.choices, *(["experiments.yours:function"] if declared.reference else [])])
    if declared.pattern:
        return st.one_of(st.just(""), st.from_regex(declared.pattern))
    if kind is bool:
        return st.booleans()
    bounds = declared.values or Range(0, 100)
    low, high = bounds.low, bounds.high
    if kind is int:
        low = int(low) + bounds.low_open
        return st.integers(low, low + 10_000 if high is None else int(high) - bounds.high_open)
    if kind is float:
        return st.floats(low, 1e6 if high is None else high, exclude_min=bounds.low_open,
                         exclude_max=bounds.high_open and high is not None)
    if kind is str:
        return st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20)
    raise AssertionError(f"no strategy for {kind}")


@st.composite
def configs(draw):
    values = {key: draw(value_strategy(key)) for key in DECLARED}
    # The rules that join keys (Config.validate's own, not one key's declaration):
    values["split.fold"] = draw(st.integers(0, values["split.k"] - 1))
    values["split.outer_k"] = draw(st.sampled_from([0, 2, 3, 10]))  # 0 (no nested estimate) or at least 2
    values["split.outer_fold"] = draw(st.integers(0, max(values["split.outer_k"] - 1, 0)))
    if values["data.name"] not in names.ON_DISK:
        values["data.download"] = False  # only the on-disk sets download; its own tests are in test_download.py
    if values["data.name"] in ("npz", "npy") and not values["data.path"]:
        values["data.path"] = "x.npz" if values["data.name"] == "npz" else "arrays"
    task = names.task_names(values["task"])  # the loss and the built-in extra metrics are the task's
    values["train.loss"] = draw(st.sampled_from(["auto", *task.losses, "experiments.yours:loss"]))
    values["track.metrics"] = [m for m in values["track.metrics"] if m in task.extra or ":" in m]
    return Config().apply(values)


@settings(max_examples=60, deadline=None)
@given(configs())
def test_from_flat_inverts_to_flat_also_from_strings(config):
    config.validate()
    flat = config.to_flat()
    assert Config.from_flat(flat) == config
    assert Config.from_flat({key: str(value) for key, value in flat.items()}) == config  # as MLflow returns params
    assert Config.from_flat(yaml.safe_load(yaml.safe_dump(flat, sort_keys=True))) == config  # as config.yaml
    params = config.to_params()
    assert params == {key: flat[key] for key in params} and set(params) | config.unused_keys() == set(flat)


def outside(key: str):
    """A value just outside one declared rule of `key`, and words its error must have; None if it has no rule."""
    declared, kind = DECLARED[key], key_type(key)
    as_list = typing.get_origin(kind) is list
    if declared.choices:
        return (["not_a_choice"] if as_list else "not_a_choice"), "is not one of"
    if declared.pattern:
        return "ftp://example.org/", "give"
    bounds = declared.values
    if bounds is None:
        return None
    step = 1 if (typing.get_args(kind) or (kind,))[0] is int else 0.5
    value = bounds.low if bounds.low_open else bounds.low - step
    return ([value] if as_list else value), bounds.says


RULED = [key for key in DECLARED if outside(key) is not None]


@pytest.mark.parametrize("key", RULED)
def test_validation_enforces_each_declared_rule(key):
    value, words = outside(key)
    config = Config()
    config.set(key, value)
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert str(error.value).startswith(key) and words in str(error.value)
    if DECLARED[key].values and DECLARED[key].values.high is not None:  # the top end too
        config.set(key, DECLARED[key].values.high + 1)
        with pytest.raises(ConfigError, match="must be"):
            config.validate()


def test_every_choice_of_optim_name_comes_from_the_optimizer_table():
    # make_optimizer builds from names.OPTIMIZERS; the declaration (and so validation, `keys` and the fuzzing
    # above) takes its choices from there, and optim.momentum is used exactly by the optimizers that take it.
    assert DECLARED["optim.name"].choices == tuple(names.OPTIMIZERS)
    for name, optimizer in names.OPTIMIZERS.items():
        Config().apply({"optim.name": name}).validate()
        assert ("optim.momentum" in Config().apply({"optim.name": name}).to_params()) == ("momentum" in optimizer.keys)


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


def another_value(key: str, default):
    """A value of `key` other than its default (valid or not: only where it lands is checked)."""
    choices = DECLARED[key].choices
    if choices:
        return [choices[0]] if isinstance(default, list) else next(choice for choice in choices if choice != default)
    if isinstance(default, bool):
        return not default
    if isinstance(default, list):
        return [2]
    return default + "x" if isinstance(default, str) else default + 1


def test_every_declared_key_is_one_field_of_its_own():
    flat = Config().to_flat()
    assert list(flat) == list(DECLARED)
    assert len(flat) == 65  # a literal: a key added or lost shows here (update the count and docs/configuration.md)
    for key, default in flat.items():  # set by name, read back by name and in the flat form, nothing else moves
        config, value = Config(), another_value(key, default)
        config.set(key, value)
        assert config.get(key) == value
        assert {name for name, old in flat.items() if config.to_flat()[name] != old} == {key}


def key_value_items():
    """Override items: mostly well-formed `key=value` of real keys, with random text among them."""
    well_formed = st.builds(lambda key, value: f"{key}={value}", st.sampled_from(list(DECLARED)),
                            st.one_of(st.text(max_size=12), st.integers(-3, 3).map(str)))
    misspelt = st.builds(lambda key, tail: f"{key}{tail}=1", st.sampled_from(list(DECLARED)), st.text(max_size=3))
    return st.lists(st.one_of(well_formed, misspelt, st.text(max_size=30)), max_size=4)


def names_a_key(message: str, key: str) -> bool:
    """The key itself, or (for one of an open section's, e.g. model.args.width) its section."""
    return key in message or repr(key) in message or (key.count(".") > 1 and key.rpartition(".")[0] in message)


@settings(max_examples=200, deadline=None)
@given(key_value_items())
def test_overrides_parse_and_apply_or_are_one_line_naming_the_item_or_key(items):
    try:
        parsed = parse_overrides(items)
    except ConfigError as error:
        malformed = [item for item in items if not item.partition("=")[0].strip() or "=" not in item]
        assert malformed and str(error).startswith(f"override {malformed[0]!r}")
        return
    assert parsed == {item.partition("=")[0].strip(): item.partition("=")[2].strip() for item in items}
    try:
        config = Config().apply(parsed).validate()
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message
        assert any(names_a_key(message, key) for key in parsed)
        return
    assert all(is_valid_key(key) for key in parsed)
    for key in set(parsed) & set(DECLARED):  # each value converted to its key's declared type
        kind = key_type(key)
        assert isinstance(config.get(key), typing.get_origin(kind) or kind)


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


def test_the_spec_loaders_take_defaults_and_choices_from_their_declarations(tmp_path, monkeypatch):
    import dataclasses

    from core import compare
    from core.study import spec as study_spec

    def declare(table, key, **change):
        monkeypatch.setitem(table, key, dataclasses.replace(table[key], **change))

    study = tmp_path / "study.yaml"
    study.write_text("config: {train: {epochs: 1}}\nspace: {optim.lr: {type: float, low: 0.01, high: 0.1}}\n")
    declare(study_spec.STUDY_KEYS, "budget.trials", default=7)
    declare(study_spec.STUDY_KEYS, "pruner.name", default="none")
    loaded = study_spec.load_spec(study)
    assert (loaded.trials, loaded.pruner, loaded.sampler) == (7, {"name": "none"}, {"name": "tpe"})
    declare(study_spec.STUDY_KEYS, "sampler.name", choices=("tpe",))
    study.write_text(study.read_text() + "sampler: random\n")
    with pytest.raises(ConfigError, match="sampler 'random' is not one of tpe$"):
        study_spec.load_spec(study)
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text("remedies: {baseline: {}}\nk: 3\n")
    declare(compare.EXPERIMENT_KEYS, "repeats", default=2)
    declare(compare.EXPERIMENT_KEYS, "k", values=at_least(4))
    with pytest.raises(ConfigError, match="k: expected a whole number of at least 4, got 3"):
        compare.load_experiment(experiment)
    experiment.write_text("remedies: {baseline: {}}\nk: 4\n")
    assert compare.load_experiment(experiment).repeats == 2

