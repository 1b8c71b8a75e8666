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

from core import names
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
from core.schema import Key, Range, at_least, greater_than, members, sections
from core.study.space import KINDS, Param, parse_space

SAMPLERS = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
            "cmaes": optuna.samplers.CmaEsSampler, "gp": optuna.samplers.GPSampler}
PRUNERS = {"median": optuna.pruners.MedianPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
           "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner,
           "wilcoxon": optuna.pruners.WilcoxonPruner}  # K-fold only: a signed-rank test on each fold's value
# Besides the task's metrics (objective_metrics), a trial can be scored on the model's size or its time.
OWN_METRICS = ("parameters", "seconds")
# Parameter importance: PED-ANOVA is fast and fine with few trials; fANOVA (a random forest) on request.
IMPORTANCE_EVALUATORS = {"ped_anova": optuna.importance.PedAnovaImportanceEvaluator,
                         "fanova": optuna.importance.FanovaImportanceEvaluator}
DIRECTIONS = ("maximize", "minimize")

# Every key a study spec takes, declared once: load_spec reads its defaults and allowed values, `keys` lists it.
STUDY_KEYS = {
    "name": Key("the study's name: its MLflow experiment and Optuna study (--name overrides)",
                shown_default="the spec file's name"),
    "config": Key("the base config: config keys as a mapping (key=value overrides go last)", default={}),
    "space.<key>": Key("a searched config key: {type: float | int, low, high, log: true, step} or {type: "
                       "categorical, choices: [...]}; `when: {key: value or [values]}` makes it conditional",
                       choices=KINDS, shown_default="(one entry or more)"),
    "objective.metric": Key("what a trial is scored on: val_ or train_ of the task's metrics or loss, val_<name> "
                            "for a metric named in track.metrics, parameters, seconds",
                            shown_default="the task's: val_acc, val_rmse (regression), val_micro_f1 (multilabel)"),
    "objective.direction": Key("whether the metric is maximized or minimized", choices=DIRECTIONS,
                               shown_default="the metric's (minimize: loss, rmse, mae, log_loss, parameters, "
                                             "seconds; else maximize)"),
    "objective.metrics": Key("several metrics instead of one: a multi-objective study (no pruning, target or "
                             "patience)", shown_default="[metric]"),
    "objective.directions": Key("one direction per metric of objective.metrics", shown_default="[direction]"),
    "sampler.name": Key("Optuna's sampler; its other keys are the sampler's own arguments (seed: the study's)",
                        default="tpe", choices=tuple(SAMPLERS)),
    "pruner.name": Key("Optuna's pruner (wilcoxon: K-fold only); its other keys are the pruner's own arguments",
                       default="median", choices=tuple(PRUNERS)),
    "budget.trials": Key("trials to run (--trials overrides)", default=30, values=at_least(1)),
    "budget.timeout": Key("seconds after which no new trial starts (--timeout overrides)",
                          values=greater_than(0)),
    "budget.target": Key("stop once the best value reaches this (single objective)"),
    "budget.patience": Key("stop after this many finished trials without improving by min_delta (single objective)",
                           values=at_least(1)),
    "budget.min_delta": Key("the improvement that budget.patience counts", default=0.0, values=at_least(0)),
    "seed": Key("seeds the sampler and, with each trial's number, the trial's run", shown_default="config's seed",
                values=Range(0, MAX_SEED, says=f"must be a whole number in 0..{MAX_SEED}")),
    "final.top": Key("after the search, train the best this-many configurations again on fresh seeds "
                     "(--final-top overrides)", default=3, values=at_least(1)),
    "final.seeds": Key("how many fresh seeds each of them trains with (--final-seeds overrides)", default=5,
                       values=at_least(2)),
    "importance.evaluator": Key("parameter importance: ped_anova is fast and fine with few trials; fanova fits a "
                                "random forest", default="ped_anova", choices=tuple(IMPORTANCE_EVALUATORS)),
}
SECTIONS = sections(STUDY_KEYS)
BUDGET_KEYS = members(STUDY_KEYS, "budget")


def default(key: str) -> Any:
    """A study spec key's declared default."""
    return STUDY_KEYS[key].default


@dataclass
class StudySpec:
    name: str
    base: Config
    params: list[Param]
    metrics: list[str]
    directions: list[str]
    sampler: dict[str, Any] = field(default_factory=lambda: {"name": default("sampler.name")})
    pruner: dict[str, Any] = field(default_factory=lambda: {"name": default("pruner.name")})
    trials: int = default("budget.trials")
    timeout: float | None = None
    seed: int = 0
    path: str = ""
    importance: dict[str, Any] = field(default_factory=lambda: {"evaluator": default("importance.evaluator")})
    target: float | None = None  # stop once the best value reaches it (study.stopping)
    patience: int | None = None  # stop after this many finished trials without improving by min_delta
    min_delta: float = default("budget.min_delta")
    final: dict[str, int] | None = None  # {top, seeds}: the final phase on fresh seeds (study.final); None: none
    mlflow_experiment: str = ""  # "" = the study's name; a nested estimate's fold studies share the estimate's
    within_run: str = ""  # the run the study's parent run sits under (a nested estimate's outer-fold run)

    @property
    def experiment(self) -> str:
        """The MLflow experiment of the study's runs."""
        return self.mlflow_experiment or self.name

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def folds(self) -> int:
        return self.base.split.k if self.base.split.kind != "holdout" else 1


def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = (), name: str | None = None,
              trials: int | None = None, timeout: float | None = None,
              final: dict[str, int | None] | None = None) -> StudySpec:
    """Read and check a study spec; every problem is one ConfigError before anything is created. `final`: the
    command line's --final-top / --final-seeds (None where not given), over the spec's `final:` section."""
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
        sampler=_section(path, document, "sampler"), pruner=_section(path, document, "pruner"),
        trials=trials if trials is not None else whole_number(path, "budget.trials",
                                                              budget.get("trials", default("budget.trials"))),
        timeout=timeout if timeout is not None else _seconds(path, budget.get("timeout")),
        seed=whole_number(path, "seed", document.get("seed", base.seed)), path=str(path),
        importance=_importance(path, document.get("importance")), target=budget.get("target"),
        patience=budget.get("patience"), min_delta=budget.get("min_delta", default("budget.min_delta")),
        final=_final(path, document.get("final"), final or {}))
    _check(path, spec)
    if spec.final and spec.multi_objective:
        raise ConfigError(f"{path}: final (--final-top, --final-seeds) ranks configurations on one objective; "
                          f"a multi-objective study has none")
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


def objective_metrics(base: Config) -> list[str]:
    """What a trial of this base config can be scored on: the task's metrics and loss on validation and training,
    the validation value of each track.metrics, the model's size and the trial's time."""
    task = names.task_names(base.task)
    own = ["loss", *dict.fromkeys([*task.epoch, *task.final])]
    return ([f"val_{name}" for name in own] + [f"train_{name}" for name in own]
            + [f"val_{metric_name(m)}" for m in base.track.metrics] + list(OWN_METRICS))


def per_epoch_metrics(base: Config) -> set[str]:
    """The objective metrics every epoch has, which can be reported to the pruner."""
    return set(names.epoch_keys(base.task))


def _objective(path, objective: Any, base: Config) -> tuple[list[str], list[str]]:
    metrics = objective.get("metrics") or [objective.get("metric", f"val_{names.main_metric(base.task)}")]
    directions = objective.get("directions") or ([objective["direction"]] if "direction" in objective else
                                                 [names.direction(str(metric)) for metric in metrics])
    if len(metrics) != len(directions):
        raise ConfigError(f"{path}: objective has {len(metrics)} metrics but {len(directions)} directions")
    allowed = objective_metrics(base)
    for metric in metrics:
        if metric not in allowed:
            raise ConfigError(f"{path}: objective metric {metric!r} is not one of task={base.task}'s "
                              f"{', '.join(allowed)} (val_<name> for a metric named in track.metrics)")
    for direction in directions:
        if direction not in STUDY_KEYS["objective.direction"].choices:
            raise ConfigError(f"{path}: direction {direction!r} must be maximize or minimize")
    return list(metrics), list(directions)


def _check(path, spec: StudySpec) -> None:
    trials = STUDY_KEYS["budget.trials"].values
    if not trials.holds(spec.trials):
        raise ConfigError(f"--trials={spec.trials}: {trials.says}")
    if spec.timeout is not None and not STUDY_KEYS["budget.timeout"].values.holds(spec.timeout):
        raise ConfigError(f"--timeout={spec.timeout}: must be more than 0 seconds")
    check_name_length("study name", spec.name)
    check_printable("study name", spec.name)
    seeds = STUDY_KEYS["seed"].values
    if not seeds.holds(spec.seed):
        raise ConfigError(f"{path}: seed={shorten(str(spec.seed))}: {seeds.says}")
    for part in ("sampler", "pruner"):
        choices = STUDY_KEYS[f"{part}.name"].choices
        if getattr(spec, part)["name"] not in choices:
            raise ConfigError(f"{path}: {part} {getattr(spec, part)['name']!r} is not one of {', '.join(choices)}")
    if spec.pruner["name"] == "wilcoxon" and spec.folds == 1:
        raise ConfigError(f"{path}: the wilcoxon pruner compares each fold's value: it needs split.kind kfold "
                          f"or stratified_kfold, not {spec.base.split.kind}")


def _budget(path, budget: Any) -> dict[str, Any]:
    budget = budget or {}
    if not isinstance(budget, dict) or set(budget) - set(BUDGET_KEYS):
        raise ConfigError(f"{path}: `budget:` takes {', '.join(BUDGET_KEYS)}, got {budget!r}")
    for key in ("target", "min_delta"):
        if key in budget and (not isinstance(budget[key], (int, float)) or isinstance(budget[key], bool)):
            raise ConfigError(f"{path}: budget.{key} must be a number, got {budget[key]!r}")
    if "patience" in budget and (not isinstance(budget["patience"], int)
                                 or not STUDY_KEYS["budget.patience"].values.holds(budget["patience"])):
        raise ConfigError(f"{path}: budget.patience must be a whole number of trials, at least 1")
    if not STUDY_KEYS["budget.min_delta"].values.holds(budget.get("min_delta", default("budget.min_delta"))):
        raise ConfigError(f"{path}: budget.min_delta must be 0 or more")
    return budget


def _final(path, section: Any, given: dict[str, int | None]) -> dict[str, int] | None:
    """The final phase's {top, seeds}: the spec's `final:` with the command line's values over it; None when
    neither asks for it."""
    if section is not None and (not isinstance(section, dict) or set(section) - {"top", "seeds"}):
        raise ConfigError(f"{path}: `final:` takes top and seeds, e.g. final: {{top: 3, seeds: 5}}, got {section!r}")
    given = {key: value for key, value in given.items() if value is not None}
    if section is None and not given:
        return None
    final = {key: default(f"final.{key}") for key in ("top", "seeds")} | (section or {}) | given
    for key, value in final.items():
        declared = STUDY_KEYS[f"final.{key}"].values
        if isinstance(value, bool) or not isinstance(value, int) or not declared.holds(value):
            raise ConfigError(f"final.{key}={shorten(str(value))}: {declared.says} (a whole number)")
    return final


def _importance(path, value: Any) -> dict[str, Any]:
    value = value or {"evaluator": default("importance.evaluator")}
    choices = STUDY_KEYS["importance.evaluator"].choices
    if not isinstance(value, dict) or set(value) - {"evaluator"} or value.get("evaluator") not in choices:
        raise ConfigError(f"{path}: `importance:` takes evaluator: one of {', '.join(choices)}, got {value!r}")
    return dict(value)


def make_importance_evaluator(spec: StudySpec) -> optuna.importance.BaseImportanceEvaluator:
    name = spec.importance["evaluator"]
    # fANOVA fits a random forest: seeded, so the same trials give the same importances.
    return IMPORTANCE_EVALUATORS[name](seed=spec.seed) if name == "fanova" else IMPORTANCE_EVALUATORS[name]()


def _section(path, document: dict, key: str) -> dict[str, Any]:
    """The sampler or pruner: its name (or the declared default) and the Optuna class's own arguments."""
    value = document.get(key) or {"name": default(f"{key}.name")}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{path}: `{key}:` needs a name, e.g. {key}: {{name: {default(f'{key}.name')}}}")
    return dict(value)


def make_sampler(spec: StudySpec, worker: int, trials_so_far: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler of one worker. Workers explore differently, and a resumed worker (`trials_so_far`: the trials
    the study already has) draws other random proposals than the first start did, which it would repeat from
    the same seed. A new study's first workers keep the seeds they always had; trial seeds stay derived from
    trial numbers."""
    options = {k: v for k, v in spec.sampler.items() if k != "name"}
    # 1_000_003 > any worker count: (worker, trials_so_far) pairs never share a seed
    seed = int(options.pop("seed", spec.seed)) * 1000 + worker + trials_so_far * 1_000_003
    seed %= 2**32  # NumPy takes seeds below 2**32
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
    """The FitResult metric an objective metric reads: val_acc -> final_val_acc, val_rmse -> final_val_rmse."""
    return metric if metric in OWN_METRICS else f"final_{metric}"


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's seed, from the study seed and trial number alone (not the worker)."""
    return (study_seed * 1_000_003 + number * 7919 + 17) % (2**31 - 1)
