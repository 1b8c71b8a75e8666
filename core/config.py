"""One dataclass tree for everything a run needs.

A config comes from defaults, then a YAML spec, then `key=value` overrides.
`to_flat()` gives dotted keys (logged as MLflow params) and `from_flat()` is its
exact inverse, also when every value arrives as a string (as MLflow returns
params). Unknown keys and wrong types raise `ConfigError` naming the key.
Each field is declared once with its description, choices or range and when it is used
(`core.schema.setting`): validation, `unused_keys` and `python -m core keys` read that.
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

from core import hostile_values, names, schema, user_code
from core.errors import ConfigError
from core.schema import OPEN_UNIT, Range, at_least, greater_than, setting, shorten, unless, when

# Keys that older versions logged and this one no longer has: runs logged with them still rebuild.
RETIRED_KEYS = {"train.cpu_linear"}  # the CPU matmul library choice (oneDNN or MKL), removed for one numerics path


# Seeds go to torch, NumPy (below 2**32) and scikit-learn (random_state below 2**32), some as seed + 1.
MAX_SEED = 2**31 - 1
MAX_NAME = 200  # MLflow refuses experiment names over 500 characters; study and run names share this limit
ON_DISK = tuple(names.ON_DISK)
BUILT_IN_MODELS = when("model.name", *names.MODELS)  # the user's own builder takes model.args only
SYNTHETIC = when("data.name", "synthetic")
AUGMENTATIONS = ("none", "shift", "flip", "crop")  # none adds nothing: older runs logged train.augment=none

# Each key is declared once, here (core/schema.py): its default, description, allowed values and when it is used.


@dataclass
class DataConfig:
    name: str = setting("digits", "the data set: a built-in, or module:function of your own loader",
                        choices=names.DATASETS, reference="loader")
    root: str = setting("data", "where mnist / fashion_mnist / cifar10 files live; image_folder: the folder of class "
                        "folders", used_when=when("data.name", *ON_DISK, "image_folder"))
    path: str = setting("", "npz: the .npz file (arrays x_train, y_train, optionally x_test, y_test); npy: the "
                        "folder of x_train.npy, y_train.npy (optionally x_test.npy, y_test.npy), memory-mapped",
                        used_when=when("data.name", "npz", "npy"))
    cache: bool = setting(True, "decode files once per machine into mlruns/cache/ and memory-map them there "
                          "(image_folder, mnist, fashion_mnist, cifar10; npy's test part when cut out)",
                          used_when=when("data.name", *ON_DISK, "image_folder", "npy"))
    in_memory: str = setting("auto", "the whole set on the training device (true), or batches streamed to it by a "
                             "background loader (false); auto = in memory when it fits data.memory_budget",
                             choices=("auto", "true", "false"))
    memory_budget: float = setting(0.0, "in_memory=auto: GiB the decoded set may take on the device; 0 = half the "
                                   "RAM (CPU) or half the GPU's memory (CUDA)", values=at_least(0.0),
                                   used_when=when("data.in_memory", "auto"))
    loader_workers: int = setting(-1, "streamed sets: the loader's worker processes; -1 = auto (0 on the CPU, "
                                  "where gathering in the training process measured fastest; 2 for CUDA)",
                                  values=at_least(-1), used_when=unless("data.in_memory", "true"))
    download: bool = setting(False, "mnist, fashion_mnist, cifar10: fetch missing files (checksums verified) into root",
                             used_when=when("data.name", *ON_DISK))
    mirror: str = setting("", "with download: another host to fetch from, e.g. http://mirror.example.org/mnist/",
                          pattern=r"^(https?|file)://", pattern_says="a URL, e.g. http://mirror.example.org/mnist/",
                          used_when=when("data.download", True))
    args: dict[str, Any] = setting({}, "the keyword arguments of your own data.name=module:function")
    train_size: int = setting(0, "use only this many training samples; 0 = all", values=at_least(0))
    resize: int = setting(0, "resize images to resize x resize; 0 = native size", values=at_least(0))
    test_fraction: float = setting(0.2, "sets without a test part of their own (digits, synthetic, yours): its size",
                                   values=OPEN_UNIT, used_when=unless("data.name", *ON_DISK))
    shape: list[int] = setting([1, 8, 8], "synthetic: one sample's shape", items=(1, 3), used_when=SYNTHETIC,
                               values=Range(1, says="give 1 to 3 positive sizes, e.g. [1, 8, 8]"))
    num_classes: int = setting(10, "synthetic only: number of classes", values=at_least(2), used_when=SYNTHETIC)
    samples: int = setting(1000, "synthetic only: train + test samples", values=at_least(4), used_when=SYNTHETIC)
    targets: str = setting("auto", "synthetic only: classes, values (regression) or labels (num_classes 0/1 labels); "
                           "auto = what the task learns", choices=("auto", "classes", "values", "labels"),
                           used_when=SYNTHETIC)


@dataclass
class SplitConfig:
    kind: str = setting("holdout", "how training data is split into training and validation parts",
                        choices=("holdout", "kfold", "stratified_kfold"))
    val_fraction: float = setting(0.2, "the validation part's share", values=OPEN_UNIT,
                                  used_when=when("split.kind", "holdout"))
    stratify: bool = setting(True, "keep each class's share in both parts", used_when=when("split.kind", "holdout"))
    k: int = setting(5, "the number of folds", values=at_least(2), used_when=unless("split.kind", "holdout"))
    fold: int = setting(0, "which of the k folds is the validation part (0..k-1)",
                        used_when=unless("split.kind", "holdout"))
    seed: int = setting(-1, "the split's own seed; -1 = the run's seed (a fixed one: every trial of a study on the "
                        "same parts)",
                        values=Range(-1, MAX_SEED, says=f"must be -1 (the run's seed) or in 0..{MAX_SEED}"))
    # A nested estimate (study --outer-folds) sets these: the training part becomes the outer fold's training
    # part, and the fold's held-out part stands in for the test part (the data set's own is not looked at).
    outer_k: int = setting(0, "a nested estimate's outer folds of the training part (study --outer-folds sets it); "
                           "0 = none", values=Range(0, says="must be 0 (none) or at least 2"))
    outer_fold: int = setting(0, "which outer fold is held out as the test part (0..outer_k-1)",
                              values=at_least(0), used_when=unless("split.outer_k", 0))
    outer_seed: int = setting(0, "the outer folds' seed (the study's: every trial of a fold on the same parts)",
                              values=Range(0, MAX_SEED, says=f"must be in 0..{MAX_SEED}"),
                              used_when=unless("split.outer_k", 0))


@dataclass
class ModelConfig:
    name: str = setting("mlp", "a built-in name, or module:function of your own builder", choices=names.MODELS,
                        reference="builder")
    args: dict[str, Any] = setting({}, "the keyword arguments of your own model.name=module:function")
    hidden: list[int] = setting([], "fully connected widths; [] = the model's own", used_when=BUILT_IN_MODELS,
                                values=Range(1, says="every width must be at least 1"),
                                shown_default=f"[] = the model's own (mlp: {names.HIDDEN['mlp']}, "
                                              f"lenet5: {names.HIDDEN['lenet5']}, ...)")
    channels: list[int] = setting([], "conv widths; [] = the model's own",
                                  values=Range(1, says="every width must be at least 1"),
                                  used_when=when("model.name", *(name for name in names.MODELS
                                                                 if name not in names.FULLY_CONNECTED)))
    dropout: float = setting(0.0, "dropout probability after each hidden layer", used_when=BUILT_IN_MODELS,
                             values=Range(0, 1, high_open=True, says="must be in [0, 1)"))
    batchnorm: bool = setting(False, "batch normalisation after each hidden layer", used_when=BUILT_IN_MODELS)


@dataclass
class OptimConfig:
    name: str = setting("sgd", "the optimizer (names.OPTIMIZERS)", choices=tuple(names.OPTIMIZERS))
    lr: float = setting(0.05, "learning rate", values=greater_than(0))
    momentum: float = setting(0.9, "momentum, for the optimizers that take it", values=at_least(0.0),
                              used_when=when("optim.name", *names.optimizers_using("momentum")))
    weight_decay: float = setting(0.0, "L2, on weights only (not biases or norm parameters)", values=at_least(0.0))


@dataclass
class SchedConfig:
    name: str = setting("none", "the learning-rate schedule", choices=("none", "step", "plateau", "cosine"))
    step_size: int = setting(10, "step: epochs between decays", values=at_least(1),
                             used_when=when("sched.name", "step"))
    gamma: float = setting(0.1, "step and plateau: decay factor", values=OPEN_UNIT,
                           used_when=when("sched.name", "step", "plateau"))
    patience: int = setting(3, "plateau: epochs without improvement before a decay", values=at_least(0),
                            used_when=when("sched.name", "plateau"))


@dataclass
class RegConfig:
    l1: float = setting(0.0, "lambda of the L1 penalty on weights", values=at_least(0.0))


@dataclass
class EarlyStopConfig:
    patience: int = setting(0, "epochs without val-loss improvement before stopping; 0 = off", values=at_least(0))
    min_delta: float = setting(0.0, "smallest decrease of val loss that counts as improvement", values=at_least(0.0),
                               used_when=unless("early_stop.patience", 0))


@dataclass
class TrainConfig:
    epochs: int = setting(20, "most epochs to train (early stopping or pruning may end sooner)", values=at_least(1))
    batch_size: int = setting(64, "samples per optimizer step", values=at_least(1))
    deterministic: bool = setting(False, "torch.use_deterministic_algorithms")
    augment: list[str] = setting([], "the training batches' image augmentation (not validation or test), batched "
                                 "on the device and seeded, applied in this order: shift (random shifts, zeros "
                                 "in), flip (horizontal, half the images), crop (random crop of the image padded "
                                 "by reflection); e.g. [flip, crop]; none = []", choices=AUGMENTATIONS)
    shift: int = setting(2, "augment has shift: largest shift in pixels", values=at_least(0),
                         used_when=when("train.augment", "shift"))
    crop_padding: int = setting(4, "augment has crop: the reflection padding, so the largest offset, in pixels",
                                values=at_least(1), used_when=when("train.augment", "crop"))
    compile: bool = setting(False, "torch.compile the model (CUDA); Dynamo is reset for each fit; compiling is "
                                    "summary/compile_seconds, left out of epoch/epoch_seconds")
    checkpoint: bool = setting(False, "a checkpoint after every epoch (mlruns/checkpoints/<run_id>.pt), for train "
                               "--resume")
    loss: str = setting("auto", "the loss: auto = the task's first (cross_entropy, mse, bce); regression: mse, l1, "
                        "huber; or module:function(outputs, targets) -> scalar tensor",
                        choices=("auto", *names.all_losses()), reference="loss function")
    label_smoothing: float = setting(0.0, "classification: cross-entropy's label smoothing",
                                     values=Range(0, 1, high_open=True, says="must be in [0, 1)"),
                                     used_when=when("task", "auto", "classification"))
    step: str = setting("", "your own training step, module:function(model, inputs, targets, context) -> loss "
                        "(mixup, auxiliary heads); \"\" = the scaffold's", pattern=user_code.PATTERN.pattern,
                        pattern_says="module:function")
    threads: int = setting(0, "torch's intra-op CPU threads: 0 = auto (OMP_NUM_THREADS when set; else 1 for a model "
                           "under 10M FLOPs a sample, else the cores over the study's workers), N = N",
                           values=at_least(0))


@dataclass
class TrackConfig:
    experiment: str = setting("train", "MLflow experiment name")
    run_name: str = setting("", "\"\" = made from the config")
    visdom: str = setting("auto", "the live view: auto = when a server answers, on = required, off",
                          choices=("auto", "on", "off"))
    visdom_url: str = setting("http://127.0.0.1:8097", "the Visdom server of the live view",
                              used_when=unless("track.visdom", "off"))
    flush_every: int = setting(50, "steps between sends of per-step values", values=at_least(1))
    log_model: bool = setting(True, "the model (MLflow format) and its weights")
    figures: bool = setting(True, "learning curves and the task's figures (confusion matrix; predicted against true) "
                            "as PNG")
    metrics: list[str] = setting([], "extra metrics: macro_f1, ..., or module:function", choices=names.METRICS,
                                 reference="metric function")
    system_metrics: bool = setting(False, "MLflow's own CPU, memory (and GPU) sampling, as system/* metrics of each "
                                   "run")


@dataclass
class Config:
    seed: int = setting(0, "seeds weights, splits and batches (a study derives each trial's from it)",
                        values=Range(0, MAX_SEED, says=f"must be a whole number in 0..{MAX_SEED}"))
    device: str = setting("auto", "auto = cuda when available, else cpu", choices=("auto", "cpu", "cuda"))
    task: str = setting("auto", "what is learnt (core/tasks.py): classification, regression (float targets) or "
                        "multilabel (0/1 matrix); auto = classification, refusing targets that do not look like "
                        "classes",
                        choices=names.TASK_CHOICES)
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
        """Keys that change nothing under this config's other choices (each key's declared `used_when`): no
        optim.momentum for Adam, no split.k on a holdout split, no sched.gamma without a schedule..."""
        flat = self.to_flat()
        return {key for key, declared in declarations().items()
                if declared.used_when is not None and not declared.used_when(flat)}

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
        if isinstance(value, bool) and kind is str and "true" in getattr(declarations().get(key), "choices", ()):
            value = str(value).lower()  # YAML reads `data.in_memory: true` as a bool; the key's choices are text
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
        """Every key against its declaration, then the rules that join keys (torch-free: nothing is built here)."""
        flat = self.to_flat()
        for key, declared in declarations().items():
            schema.check(key, declared, flat[key])
        self._check_user_parts()
        if not self.split.fold < self.split.k:
            raise ConfigError(f"split.fold={self.split.fold}: must be in 0..{self.split.k - 1} "
                              f"(split.k={self.split.k})")
        if self.split.outer_k == 1 or (self.split.outer_k and not self.split.outer_fold < self.split.outer_k):
            raise ConfigError(f"split.outer_k={self.split.outer_k}, split.outer_fold={self.split.outer_fold}: "
                              f"outer_k must be 0 or at least 2, and outer_fold in 0..outer_k-1")
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
        if self.data.name == "npy" and not self.data.path:
            raise ConfigError("data.name=npy needs data.path=FOLDER (x_train.npy, y_train.npy[, x_test.npy, "
                              "y_test.npy])")
        if self.data.name == "npz" and not self.data.path:
            raise ConfigError("data.name=npz needs data.path=FILE.npz (arrays x_train, y_train[, x_test, y_test])")
        self._check_task_parts()
        short_names = []
        for metric in self.track.metrics:
            short_names.append(metric_name(metric))
            if short_names[-1] in self.task_metrics() or short_names[-1].startswith("train_"):
                raise ConfigError(f"track.metrics: {metric} would be logged as {short_names[-1]}, a name of the "
                                  f"built-in metrics; name the function otherwise")
        if len(set(short_names)) != len(short_names):
            raise ConfigError(f"track.metrics={self.track.metrics}: two metrics share a name")

    def _check_task_parts(self) -> None:
        """The loss and the built-in extra metrics belong to the task."""
        task = names.task_names(self.task)
        if self.train.loss not in ("auto", *task.losses) and not user_code.is_reference(self.train.loss):
            raise ConfigError(f"train.loss={self.train.loss} is not a loss of task={self.task} (it takes "
                              f"{', '.join(task.losses)} or module:function)")
        for metric in self.track.metrics:
            if not user_code.is_reference(metric) and metric not in task.extra:
                raise ConfigError(f"track.metrics: {metric} is a classification metric, not one of task={self.task} "
                                  f"(it takes {', '.join(task.extra) or 'module:function only'})")

    def task_metrics(self) -> tuple[str, ...]:
        """The names the task's own metrics take (loss, acc, rmse, ...): a track.metrics function cannot."""
        task = names.task_names(self.task)
        return ("loss", *task.epoch, *task.final)

    def get(self, key: str) -> Any:
        owner, name, _ = _resolve(self, key)
        return owner.get(name) if isinstance(owner, dict) else getattr(owner, name)

    def user_references(self) -> list[str]:
        """The import paths (module:function) of the user's own model, data set and metrics in this config."""
        names = [self.model.name, self.data.name, *self.track.metrics, self.train.loss, self.train.step]
        return [name for name in names if user_code.is_reference(name)]


def declarations() -> dict[str, schema.Key]:
    """Every fixed key's declaration (core/schema.py), by dotted key, in the order of the fields."""
    return dict(_declared(Config, "", open_sections=False))  # a copy: the cached one stays as declared


def open_declarations() -> dict[str, schema.Key]:
    """The open sections' declarations (model.args, data.args): their keys are the user's."""
    return dict(_declared(Config, "", open_sections=True))


@functools.cache
def _declared(cls: type, prefix: str, open_sections: bool) -> dict[str, schema.Key]:
    found: dict[str, schema.Key] = {}
    for item in dataclasses.fields(cls):
        kind = _type_hints(cls)[item.name]
        if dataclasses.is_dataclass(kind):
            found.update(_declared(kind, f"{prefix}{item.name}.", open_sections))
        elif (typing.get_origin(kind) is dict) == open_sections:
            found[prefix + item.name] = item.metadata[schema.METADATA]
    return found


def descriptions() -> dict[str, str]:
    """Each fixed key's one-line description, as declared beside its field."""
    return {key: declared.about for key, declared in declarations().items()}


def key_type(key: str) -> Any:
    """A fixed key's declared type: int, float, str, bool or list[...]."""
    owner, name, _ = _resolve(Config(), key)
    return _type_hints(type(owner))[name]


def valid_keys() -> list[str]:
    return list(Config().to_flat())


def is_valid_key(key: str) -> bool:
    """A fixed key, or one key of an open section (e.g. model.args.width)."""
    section, _, name = str(key).rpartition(".")
    return key in valid_keys() or (section in OPEN_SECTIONS and _IDENTIFIER.match(name) is not None)


def fold_config(config: Config, fold: int, repeat: int = 0) -> Config:
    """Fold `fold` of repeat `repeat`: the seed (split and training) is the config's seed + repeat (the same for
    every remedy of a comparison), so the fold run's own config rebuilds exactly its split and its training."""
    folded = config.copy()
    folded.seed = config.seed + repeat
    folded.split.fold = fold
    return folded


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


def check_name_length(key: str, name: str, allow_empty: bool = False) -> None:
    if (not allow_empty and not name.strip()) or len(name) > MAX_NAME:
        raise ConfigError(f"{key} {shorten(name)!r}: give a non-empty name of at most {MAX_NAME} characters")


OPEN_SECTIONS = tuple(open_declarations())  # model.args, data.args: any name, values typed from YAML
