"""One dataclass tree for everything a run needs.

A config comes from defaults, then a YAML spec, then `key=value` overrides.
`to_flat()` gives dotted keys (logged as MLflow params) and `from_flat()` is its
exact inverse, also when every value arrives as a string (as MLflow returns
params). Unknown keys and wrong types raise `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core import hostile_values, names, user_code
from core.errors import ConfigError

# Keys that older versions logged and this one no longer has: runs logged with them still rebuild.
RETIRED_KEYS = {"train.cpu_linear"}  # the CPU matmul library choice (oneDNN or MKL), removed for one numerics path


@dataclass
class DataConfig:
    name: str = "digits"  # the data set: a built-in, or module:function of your own loader
    root: str = "data"  # where mnist / fashion_mnist / cifar10 files live; image_folder: the folder of class folders
    path: str = ""  # npz: the .npz file (arrays x_train, y_train, optionally x_test, y_test)
    download: bool = False  # mnist, fashion_mnist, cifar10: fetch missing files (checksums verified) into root
    mirror: str = ""  # with download: another host to fetch from, e.g. http://mirror.example.org/mnist/
    args: dict[str, Any] = field(default_factory=dict)  # a module:function loader's own arguments (open section)
    train_size: int = 0  # use only this many training samples; 0 = all
    resize: int = 0  # resize images to resize x resize; 0 = native size
    test_fraction: float = 0.2  # sets without a test part of their own (digits, synthetic, yours): its size
    shape: list[int] = field(default_factory=lambda: [1, 8, 8])  # synthetic: one sample's shape
    num_classes: int = 10  # synthetic only: number of classes
    samples: int = 1000  # synthetic only: train + test samples


@dataclass
class SplitConfig:
    kind: str = "holdout"  # how training data is split into training and validation parts
    val_fraction: float = 0.2  # holdout only
    stratify: bool = True  # holdout only
    k: int = 5  # kfold kinds only
    fold: int = 0  # which of the k folds is the validation part
    seed: int = -1  # the split's own seed; -1 = the run's seed (a fixed one: every trial of a study on the same parts)


@dataclass
class ModelConfig:
    name: str = "mlp"  # a built-in name, or module:function of your own builder
    args: dict[str, Any] = field(default_factory=dict)  # your builder's own arguments (open section)
    hidden: list[int] = field(default_factory=list)  # fully connected widths; [] = the model's own
    channels: list[int] = field(default_factory=list)  # conv widths; [] = the model's own
    dropout: float = 0.0  # dropout probability after each hidden layer
    batchnorm: bool = False  # batch normalisation after each hidden layer


@dataclass
class OptimConfig:
    name: str = "sgd"  # the optimizer
    lr: float = 0.05  # learning rate
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0  # L2, on weights only (not biases or norm parameters)


@dataclass
class SchedConfig:
    name: str = "none"  # the learning-rate schedule
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.1  # step and plateau: decay factor
    patience: int = 3  # plateau: epochs without improvement before a decay


@dataclass
class RegConfig:
    l1: float = 0.0  # lambda of the L1 penalty on weights


@dataclass
class EarlyStopConfig:
    patience: int = 0  # epochs without val-loss improvement before stopping; 0 = off
    min_delta: float = 0.0  # smallest decrease of val loss that counts as improvement


@dataclass
class TrainConfig:
    epochs: int = 20  # most epochs to train (early stopping or pruning may end sooner)
    batch_size: int = 64  # samples per optimizer step
    deterministic: bool = False  # torch.use_deterministic_algorithms
    augment: str = "none"  # shift = random shifts of the training batches' images (not validation or test), seeded
    shift: int = 2  # augment=shift: largest shift in pixels
    compile: bool = False  # torch.compile the model (CUDA)
    checkpoint: bool = False  # a checkpoint after every epoch (mlruns/checkpoints/<run_id>.pt), for train --resume


@dataclass
class TrackConfig:
    experiment: str = "train"  # MLflow experiment name
    run_name: str = ""  # "" = made from the config
    visdom: str = "auto"  # the live view: auto = when a server answers, on = required, off
    visdom_url: str = "http://127.0.0.1:8097"  # the Visdom server of the live view
    flush_every: int = 50  # steps between sends of per-step values
    log_model: bool = True  # the model (MLflow format) and its weights
    figures: bool = True  # learning curves and confusion matrix as PNG
    metrics: list[str] = field(default_factory=list)  # extra metrics: macro_f1, ..., or module:function
    system_metrics: bool = False  # MLflow's own CPU, memory (and GPU) sampling, as system/* metrics of each run


@dataclass
class Config:
    seed: int = 0  # seeds weights, splits and batches (a study derives each trial's from it)
    device: str = "auto"  # auto = cuda when available, else cpu
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)

    # ---- flat form -------------------------------------------------------
    def to_flat(self) -> dict[str, Any]:
        """Every leaf as a dotted key, e.g. {"optim.lr": 0.01, ...}."""
        return _flatten(self, "")

    def to_params(self) -> dict[str, Any]:
        """`to_flat()` less the keys this config's other choices leave unused (`unused_keys`): a run's params."""
        unused = self.unused_keys()
        return {key: value for key, value in self.to_flat().items() if key not in unused}

    def unused_keys(self) -> set[str]:
        """Keys that change nothing under this config's other choices: no optim.momentum for Adam, no split.k
        on a holdout split, no sched.gamma without a schedule..."""
        unused = set()
        if self.optim.name != "sgd":
            unused.add("optim.momentum")
        unused |= {key for key, schedules in SCHEDULE_KEYS.items() if self.sched.name not in schedules}
        if self.split.kind == "holdout":
            unused |= {"split.k", "split.fold"}
        else:
            unused |= {"split.val_fraction", "split.stratify"}
        if self.train.augment == "none":
            unused.add("train.shift")
        if self.early_stop.patience == 0:
            unused.add("early_stop.min_delta")
        if self.track.visdom == "off":
            unused.add("track.visdom_url")
        return unused | self._unused_data_keys() | self._unused_model_keys()

    def _unused_data_keys(self) -> set[str]:
        name, on_disk = self.data.name, self.data.name in names.ON_DISK
        unused = set()
        if name != "synthetic":
            unused |= {"data.shape", "data.num_classes", "data.samples"}
        if name != "npz":
            unused.add("data.path")
        if not on_disk and name != "image_folder":
            unused.add("data.root")
        if on_disk:
            unused.add("data.test_fraction")  # these sets have a test part of their own
        else:
            unused.add("data.download")
        if not self.data.download:
            unused.add("data.mirror")
        return unused

    def _unused_model_keys(self) -> set[str]:
        if user_code.is_reference(self.model.name):  # the user's builder takes model.args only
            return {"model.hidden", "model.channels", "model.dropout", "model.batchnorm"}
        return {"model.channels"} if self.model.name in names.FULLY_CONNECTED else set()

    @classmethod
    def from_flat(cls, flat: dict[str, Any]) -> Config:
        """The exact inverse of `to_flat`; values may be strings (MLflow params)."""
        config = cls()
        for key, value in flat.items():
            if key not in RETIRED_KEYS:
                config.set(key, value)
        config.validate()
        return config

    # ---- edits -----------------------------------------------------------
    def set(self, key: str, value: Any) -> None:
        """Set one dotted key, converting `value` to the field's type (open sections: parsed as YAML)."""
        owner, name, kind = _resolve(self, key)
        if isinstance(owner, dict):
            owner[name] = _open_value(key, value)
        else:
            setattr(owner, name, _convert(key, kind, value))

    def apply(self, values: dict[str, Any]) -> Config:
        """Set several dotted keys (nested dicts are flattened first)."""
        for key, value in _flatten_mapping(values, "").items():
            self.set(key, value)
        return self

    def copy(self) -> Config:
        return Config.from_flat(self.to_flat())

    # ---- checks ----------------------------------------------------------
    def validate(self) -> Config:
        """Range and choice checks that types alone cannot express (torch-free: nothing is built here)."""
        _choice("device", self.device, CHOICES["device"])
        _builtin_or_reference("data.name", self.data.name, names.DATASETS, "loader")
        _builtin_or_reference("model.name", self.model.name, names.MODELS, "builder")
        self._check_user_parts()
        _choice("split.kind", self.split.kind, CHOICES["split.kind"])
        _choice("optim.name", self.optim.name, CHOICES["optim.name"])
        _choice("sched.name", self.sched.name, CHOICES["sched.name"])
        _choice("train.augment", self.train.augment, CHOICES["train.augment"])
        _choice("track.visdom", self.track.visdom, CHOICES["track.visdom"])
        _at_least("data.train_size", self.data.train_size, 0)
        _at_least("data.resize", self.data.resize, 0)
        _at_least("data.num_classes", self.data.num_classes, 2)
        _at_least("data.samples", self.data.samples, 4)
        _open_unit("data.test_fraction", self.data.test_fraction)
        if not 1 <= len(self.data.shape) <= 3 or min(self.data.shape) < 1:
            raise ConfigError(f"data.shape={self.data.shape}: give 1 to 3 positive sizes, e.g. [1, 8, 8]")
        _open_unit("split.val_fraction", self.split.val_fraction)
        _at_least("split.k", self.split.k, 2)
        if not -1 <= self.split.seed <= MAX_SEED:
            raise ConfigError(f"split.seed={shorten(str(self.split.seed))}: must be -1 (the run's seed) "
                              f"or in 0..{MAX_SEED}")
        if not 0 <= self.split.fold < self.split.k:
            raise ConfigError(f"split.fold={self.split.fold}: must be in 0..{self.split.k - 1} "
                              f"(split.k={self.split.k})")
        for key in ("model.hidden", "model.channels"):
            widths = self.get(key)
            if any(width < 1 for width in widths):
                raise ConfigError(f"{key}={widths}: every width must be at least 1")
        if not 0.0 <= self.model.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.model.dropout}: must be in [0, 1)")
        _positive("optim.lr", self.optim.lr)
        _at_least("optim.momentum", self.optim.momentum, 0.0)
        _at_least("optim.weight_decay", self.optim.weight_decay, 0.0)
        _at_least("sched.step_size", self.sched.step_size, 1)
        _open_unit("sched.gamma", self.sched.gamma)
        _at_least("sched.patience", self.sched.patience, 0)
        _at_least("reg.l1", self.reg.l1, 0.0)
        _at_least("early_stop.patience", self.early_stop.patience, 0)
        _at_least("early_stop.min_delta", self.early_stop.min_delta, 0.0)
        _at_least("train.epochs", self.train.epochs, 1)
        _at_least("train.batch_size", self.train.batch_size, 1)
        _at_least("train.shift", self.train.shift, 0)
        _at_least("track.flush_every", self.track.flush_every, 1)
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed={shorten(str(self.seed))}: must be a whole number in 0..{MAX_SEED}")
        for key in ("track.experiment", "track.run_name"):
            check_name_length(key, self.get(key), allow_empty=True)  # "" is a default (from_flat of strings)
        hostile_values.check_config_values(self.to_flat())  # names shown raw in terminals, floats past float32
        return self

    def _check_user_parts(self) -> None:
        """Open sections belong to user code; npz needs its file; metrics are built-in or user code."""
        for part, section in (("model", self.model), ("data", self.data)):
            if section.args and not user_code.is_reference(section.name):
                raise ConfigError(f"{part}.args.* are the arguments of your own code ({part}.name=module:function); "
                                  f"the built-in {section.name!r} takes none")
        if self.data.download and self.data.name not in names.ON_DISK:
            raise ConfigError(f"data.download applies to {', '.join(names.ON_DISK)}, not data.name={self.data.name}")
        if self.data.mirror and not re.match(r"^(https?|file)://", self.data.mirror):
            raise ConfigError(f"data.mirror={self.data.mirror!r}: give a URL, e.g. http://mirror.example.org/mnist/")
        if self.data.name == "npz" and not self.data.path:
            raise ConfigError("data.name=npz needs data.path=FILE.npz (arrays x_train, y_train[, x_test, y_test])")
        short_names = []
        for metric in self.track.metrics:
            _builtin_or_reference("track.metrics", metric, names.METRICS, "metric function")
            short_names.append(metric_name(metric))
            if short_names[-1] in ("acc", "loss") or short_names[-1].startswith("train_"):
                raise ConfigError(f"track.metrics: {metric} would be logged as {short_names[-1]}, a name of the "
                                  f"built-in metrics; name the function otherwise")
        if len(set(short_names)) != len(short_names):
            raise ConfigError(f"track.metrics={self.track.metrics}: two metrics share a name")

    def get(self, key: str) -> Any:
        owner, name, _ = _resolve(self, key)
        return owner.get(name) if isinstance(owner, dict) else getattr(owner, name)

    def user_references(self) -> list[str]:
        """The import paths (module:function) of the user's own model, data set and metrics in this config."""
        names = [self.model.name, self.data.name, *self.track.metrics]
        return [name for name in names if user_code.is_reference(name)]


# The schedules each sched.* key is used by (the others leave it unused).
SCHEDULE_KEYS = {"sched.step_size": ("step",), "sched.gamma": ("step", "plateau"), "sched.patience": ("plateau",)}
# Keys with a fixed set of values (data.name, model.name and track.metrics also take module:function).
CHOICES = {"device": ("auto", "cpu", "cuda"), "data.name": names.DATASETS, "model.name": names.MODELS,
           "split.kind": ("holdout", "kfold", "stratified_kfold"), "optim.name": ("sgd", "adam", "adamw"),
           "sched.name": ("none", "step", "plateau", "cosine"), "train.augment": ("none", "shift"),
           "track.visdom": ("auto", "on", "off"), "track.metrics": names.METRICS}


def descriptions() -> dict[str, str]:
    """Each fixed key's one-line description: the comment beside its field in this file (one place to keep)."""
    import inspect

    found: dict[str, str] = {}
    sections = {type(getattr(Config(), f.name)).__name__: f"{f.name}." for f in dataclasses.fields(Config)
                if dataclasses.is_dataclass(getattr(Config(), f.name))}
    prefix = None
    for line in inspect.getsource(inspect.getmodule(Config)).splitlines():
        header = re.match(r"^class (\w+)", line)
        if header:
            prefix = sections.get(header.group(1), "" if header.group(1) == "Config" else None)
        entry = re.match(r"^    (\w+): [^=]+=.*?#\s*(.+)$", line)
        if entry and prefix is not None:
            found[prefix + entry.group(1)] = entry.group(2)
    return found


def valid_keys() -> list[str]:
    return list(Config().to_flat())


OPEN_SECTIONS = ("model.args", "data.args")  # their keys are the user's: any name, values typed from YAML


def is_valid_key(key: str) -> bool:
    """A fixed key, or one key of an open section (e.g. model.args.width)."""
    section, _, name = str(key).rpartition(".")
    return key in valid_keys() or (section in OPEN_SECTIONS and _IDENTIFIER.match(name) is not None)


def load_config(spec: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then the spec file (the whole file, or its `config:` section), then overrides."""
    config = Config()
    if spec is not None:
        document = read_yaml(spec)
        config.apply(mapping(spec, "config", document["config"]) if "config" in document else document)
    config.apply(parse_overrides(overrides))
    return config.validate()


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping; any problem is one ConfigError line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"spec file not found: {path}")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(document).__name__}")
    return document


def mapping(path: str | Path, section: str, value: Any) -> dict[str, Any]:
    """A spec's section that must be a mapping (empty when left blank); anything else is one ConfigError."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: `{section}:` must be a mapping of keys to values, got {type(value).__name__}")
    return value


def whole_number(path: str | Path, key: str, value: Any) -> int:
    """A spec's whole-number entry (e.g. budget.trials), as an int; anything else is one ConfigError."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())):
        raise ConfigError(f"{path}: {key} must be a whole number, got {value!r}")
    return int(value)


def parse_overrides(overrides: list[str] | tuple[str, ...]) -> dict[str, str]:
    """`["optim.lr=0.1", "model.hidden=[64,64]"]` -> {"optim.lr": "0.1", ...} (converted on set)."""
    parsed: dict[str, str] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. optim.lr=0.01")
        parsed[key] = value.strip()
    return parsed


# ---- internals -------------------------------------------------------------

def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for item in dataclasses.fields(node):
        value = getattr(node, item.name)
        if dataclasses.is_dataclass(value):
            flat.update(_flatten(value, f"{prefix}{item.name}."))
        elif isinstance(value, dict):  # an open section: one key each
            flat.update({f"{prefix}{item.name}.{key}": _copy(entry) for key, entry in sorted(value.items())})
        else:
            flat[f"{prefix}{item.name}"] = list(value) if isinstance(value, list) else value
    return flat


def _flatten_mapping(values: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten_mapping(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _resolve(config: Config, key: str) -> tuple[Any, str, Any]:
    """The object holding `key`, the field's name and its declared type."""
    node: Any = config
    parts = str(key).split(".")
    for depth, part in enumerate(parts):
        hints = _type_hints(type(node))
        if part not in hints:
            raise ConfigError(f"unknown config key {key!r}{suggestion(key)}")
        if typing.get_origin(hints[part]) is dict:  # an open section: the rest of the key is the user's
            rest = parts[depth + 1:]
            if len(rest) != 1 or not _IDENTIFIER.match(rest[0]):
                raise ConfigError(f"config key {key!r}: {'.'.join(parts[:depth + 1])} is an open section; "
                                  f"set one name in it, e.g. {'.'.join(parts[:depth + 1])}.width=64")
            return getattr(node, part), rest[0], Any
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(hints[part]):
                first = dataclasses.fields(hints[part])[0].name
                raise ConfigError(f"config key {key!r} is a section; set one of its keys, e.g. {key}.{first}")
            return node, part, hints[part]
        node = getattr(node, part)
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"unknown config key {key!r}{suggestion(key)}")
    raise ConfigError(f"unknown config key {key!r}")


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def suggestion(key: str) -> str:
    """A hint for an unknown key: the closest known one, or where the list is."""
    close = difflib.get_close_matches(str(key), valid_keys(), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else " (run `python -m core keys` for the list)"


_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = {"true", "yes", "on", "1"}
_PLAIN = (str, int, float, bool)


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _open_value(key: str, value: Any) -> Any:
    """A value of an open section: text is read as YAML (64 -> int, 0.5 -> float, [1, 2] -> list), as the
    fixed keys' values are, so CLI overrides and MLflow's string params give back the same types."""
    if isinstance(value, str):
        try:
            parsed = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            parsed = value
        if isinstance(parsed, str):
            try:
                parsed = float(value) if math.isfinite(float(value)) else value  # YAML reads 1e-3 as text
            except ValueError:
                pass
        value = parsed
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, _PLAIN) for item in items):
        raise ConfigError(f"{key}: give a number, text, true/false or a list of them, got {value!r}")
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return _copy(value)
_FALSE = {"false", "no", "off", "0"}


def _convert(key: str, kind: Any, value: Any) -> Any:
    """`value` as the field's type; strings are parsed (CLI overrides, MLflow params)."""
    if kind is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected text, got {value!r}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a whole number, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        else:
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if typing.get_origin(kind) is list:
        if isinstance(value, str):
            try:
                value = yaml.safe_load(value) if value.strip() else []
            except yaml.YAMLError:
                raise ConfigError(f"{key}: expected a list like [64, 64], got {value!r}") from None
            if isinstance(value, int | str):
                value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list like [64, 64], got {value!r}")
        (item_kind,) = typing.get_args(kind)
        return [_convert(key, item_kind, item) for item in value]
    raise ConfigError(f"{key}: unsupported field type {kind}")


def metric_name(metric: str) -> str:
    """How a metric is logged: macro_f1 -> final_val_macro_f1 and test_macro_f1; module:score -> ..._score."""
    return metric.rpartition(":")[2]


def _builtin_or_reference(key: str, value: str, builtins: typing.Sequence[str], kind: str) -> None:
    if value not in builtins and not user_code.is_reference(value):
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(builtins)}, "
                          f"nor an import path of your own {kind} (module:function)")


# Seeds go to torch, NumPy (below 2**32) and scikit-learn (random_state below 2**32), some as seed + 1.
MAX_SEED = 2**31 - 1
MAX_NAME = 200  # MLflow refuses experiment names over 500 characters; study and run names share this limit


def shorten(text: str, keep: int = 60) -> str:
    """A user's long value in a one-line message: its start and its length, not all of it."""
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"


def check_name_length(key: str, name: str, allow_empty: bool = False) -> None:
    if (not allow_empty and not name.strip()) or len(name) > MAX_NAME:
        raise ConfigError(f"{key} {shorten(name)!r}: give a non-empty name of at most {MAX_NAME} characters")


def _choice(key: str, value: str, choices: typing.Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(choices)}")


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{key}={value}: must be at least {low}")


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{key}={value}: must be greater than 0")


def _open_unit(key: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ConfigError(f"{key}={value}: must be between 0 and 1 (exclusive)")
