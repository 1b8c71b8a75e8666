"""A study spec: the base config, the search space, the objective, the sampler, the pruner and the budget.

Loading a spec checks all of it, so every problem is one ConfigError before any
study, trial or run exists.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from core.config import (
    MAX_SEED,
    Config,
    check_name_length,
    mapping,
    metric_name,
    parse_overrides,
    read_yaml,
    shorten,
    whole_number,
)
from core.errors import ConfigError
from core.hostile_values import check_printable
from core.study.space import Param, parse_space

SECTIONS = ("name", "config", "space", "objective", "sampler", "pruner", "budget", "seed", "importance")
SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler, "gp": optuna.samplers.GPSampler}
PRUNERS = {"median": optuna.pruners.MedianPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner,
           "wilcoxon": optuna.pruners.WilcoxonPruner}  # K-fold only: a signed-rank test on each fold's value
# What a trial can be scored on: the validation metrics of fit(), or the model's size.
METRICS = {"val_acc": "final_val_acc", "val_loss": "final_val_loss", "train_acc": "final_train_acc",
           "parameters": "parameters", "seconds": "seconds"}
PER_EPOCH = {"val_acc", "val_loss", "train_acc"}  # metrics that can be reported to the pruner each epoch
# Parameter importance: PED-ANOVA is fast and fine with few trials; fANOVA (a random forest) on request.
IMPORTANCE_EVALUATORS = {"ped_anova": optuna.importance.PedAnovaImportanceEvaluator,
                         "fanova": optuna.importance.FanovaImportanceEvaluator}


@dataclass
class StudySpec:
    name: str
    base: Config
    params: list[Param]
    metrics: list[str]
    directions: list[str]
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": "median"})
    trials: int = 30
    timeout: float | None = None
    seed: int = 0
    path: str = ""
    importance: dict[str, Any] = field(default_factory=lambda: {"evaluator": "ped_anova"})
    target: float | None = None  # stop once the best value reaches it (study.stopping)
    patience: int | None = None  # stop after this many finished trials without improving by min_delta
    min_delta: float = 0.0

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def folds(self) -> int:
        return self.base.split.k if self.base.split.kind != "holdout" else 1


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = (), name: str | None = None,
              trials: int | None = None, timeout: float | None = None) -> StudySpec:
    """Read and check a study spec; every problem is one ConfigError before anything is created."""
    document = read_yaml(path)
    unknown = set(document) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} "
                          f"(expected {', '.join(SECTIONS)})")
    base = Config().apply(mapping(path, "config", document.get("config"))).apply(parse_overrides(overrides))
    base.validate()
    metrics, directions = _objective(path, mapping(path, "objective", document.get("objective")), base)
    budget = _budget(path, document.get("budget"))
    spec = StudySpec(
        name=name or str(document.get("name") or Path(path).stem),
        base=base, params=parse_space(document.get("space"), base), metrics=metrics, directions=directions,
        sampler=_section(path, document, "sampler", "tpe"), pruner=_section(path, document, "pruner", "median"),
        trials=trials if trials is not None else whole_number(path, "budget.trials", budget.get("trials", 30)),
        timeout=timeout if timeout is not None else _seconds(path, budget.get("timeout")),
        seed=whole_number(path, "seed", document.get("seed", base.seed)), path=str(path),
        importance=_importance(path, document.get("importance")), target=budget.get("target"),
        patience=budget.get("patience"), min_delta=budget.get("min_delta", 0.0))
    _check(path, spec)
    if spec.multi_objective and (spec.target is not None or spec.patience is not None):
        raise ConfigError(f"{path}: budget.target and budget.patience need a single objective")
    if spec.multi_objective and spec.pruner["name"] != "none":
        spec.pruner = {"name": "none"}  # Optuna cannot prune multi-objective trials
    make_sampler(spec, 0)
    make_pruner(spec)
    return spec


def _seconds(path, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{path}: budget.timeout must be a number of seconds, got {value!r}")
    return float(value)


def _objective(path, objective: Any, base: Config) -> tuple[list[str], list[str]]:
    objective = objective or {"metric": "val_acc", "direction": "maximize"}
    metrics = objective.get("metrics") or [objective.get("metric", "val_acc")]
    directions = objective.get("directions") or [objective.get("direction", "maximize")]
    if len(metrics) != len(directions):
        raise ConfigError(f"{path}: objective has {len(metrics)} metrics but {len(directions)} directions")
    extra = [f"val_{metric_name(m)}" for m in base.track.metrics]
    for metric in metrics:
        if metric not in METRICS and metric not in extra:
            raise ConfigError(f"{path}: objective metric {metric!r} is not one of {', '.join([*METRICS, *extra])} "
                              f"(val_<name> for a metric named in track.metrics)")
    for direction in directions:
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"{path}: direction {direction!r} must be maximize or minimize")
    return list(metrics), list(directions)


def _check(path, spec: StudySpec) -> None:
    if spec.trials < 1:
        raise ConfigError(f"--trials={spec.trials}: must be at least 1")
    if spec.timeout is not None and spec.timeout <= 0:
        raise ConfigError(f"--timeout={spec.timeout}: must be more than 0 seconds")
    check_name_length("study name", spec.name)
    check_printable("study name", spec.name)
    if not 0 <= spec.seed <= MAX_SEED:
        raise ConfigError(f"{path}: seed={shorten(str(spec.seed))}: must be a whole number in 0..{MAX_SEED}")
    if spec.sampler["name"] not in SAMPLERS:
        raise ConfigError(f"{path}: sampler {spec.sampler['name']!r} is not one of {', '.join(SAMPLERS)}")
    if spec.pruner["name"] not in PRUNERS:
        raise ConfigError(f"{path}: pruner {spec.pruner['name']!r} is not one of {', '.join(PRUNERS)}")
    if spec.pruner["name"] == "wilcoxon" and spec.folds == 1:
        raise ConfigError(f"{path}: the wilcoxon pruner compares each fold's value: it needs split.kind kfold "
                          f"or stratified_kfold, not {spec.base.split.kind}")


BUDGET_KEYS = ("trials", "timeout", "target", "patience", "min_delta")


def _budget(path, budget: Any) -> dict[str, Any]:
    budget = budget or {}
    if not isinstance(budget, dict) or set(budget) - set(BUDGET_KEYS):
        raise ConfigError(f"{path}: `budget:` takes {', '.join(BUDGET_KEYS)}, got {budget!r}")
    for key in ("target", "min_delta"):
        if key in budget and (not isinstance(budget[key], (int, float)) or isinstance(budget[key], bool)):
            raise ConfigError(f"{path}: budget.{key} must be a number, got {budget[key]!r}")
    if "patience" in budget and (not isinstance(budget["patience"], int) or budget["patience"] < 1):
        raise ConfigError(f"{path}: budget.patience must be a whole number of trials, at least 1")
    if budget.get("min_delta", 0) < 0:
        raise ConfigError(f"{path}: budget.min_delta must be 0 or more")
    return budget


def _importance(path, value: Any) -> dict[str, Any]:
    value = value or {"evaluator": "ped_anova"}
    if not isinstance(value, dict) or set(value) - {"evaluator"} or value.get("evaluator") not in IMPORTANCE_EVALUATORS:
        raise ConfigError(f"{path}: `importance:` takes evaluator: one of {', '.join(IMPORTANCE_EVALUATORS)}, "
                          f"got {value!r}")
    return dict(value)


def make_importance_evaluator(spec: StudySpec) -> optuna.importance.BaseImportanceEvaluator:
    name = spec.importance["evaluator"]
    # fANOVA fits a random forest: seeded, so the same trials give the same importances.
    return IMPORTANCE_EVALUATORS[name](seed=spec.seed) if name == "fanova" else IMPORTANCE_EVALUATORS[name]()


def _section(path, document: dict, key: str, default: str) -> dict[str, Any]:
    value = document.get(key) or {"name": default}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{path}: `{key}:` needs a name, e.g. {key}: {{name: {default}}}")
    return dict(value)


def make_sampler(spec: StudySpec, worker: int) -> optuna.samplers.BaseSampler:
    options = {k: v for k, v in spec.sampler.items() if k != "name"}
    # Workers explore differently; trial seeds stay derived from trial numbers.
    seed = (int(options.pop("seed", spec.seed)) * 1000 + worker) % 2**32  # NumPy takes seeds below 2**32
    try:
        return SAMPLERS[spec.sampler["name"]](seed=seed, **options)
    except TypeError as error:
        raise ConfigError(f"sampler {spec.sampler['name']}: {error}") from None


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    options = {k: v for k, v in spec.pruner.items() if k != "name"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # WilcoxonPruner: chosen knowingly
            return PRUNERS[spec.pruner["name"]](**options)
    except TypeError as error:
        raise ConfigError(f"pruner {spec.pruner['name']}: {error}") from None


def result_key(metric: str) -> str:
    """The FitResult metric an objective metric reads: val_acc -> final_val_acc, val_macro_f1 -> final_val_macro_f1."""
    return METRICS.get(metric, f"final_{metric}")


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's seed, from the study seed and trial number alone (not the worker)."""
    return (study_seed * 1_000_003 + number * 7919 + 17) % (2**31 - 1)
