"""Compare overfitting remedies on the same repeated K folds, with corrected paired statistics against the baseline.

Every remedy is a set of config overrides on one base config. Each is trained on the same R x K folds (stratified
for class labels; repeat r splits and trains with seed + r), so fold (r, i) of a remedy and of the baseline differ
only by the remedy: a paired design. Everything is judged on the task's main metric (accuracy, RMSE, micro F1),
"better" in its direction: a lower RMSE is better. K-fold training sets overlap, so the paired differences are
correlated and a plain paired t-test is too optimistic: the test is Nadeau and Bengio's corrected resampled
t-test, and the p-values of all remedies are adjusted together with Holm's method. MLflow gets one parent run for
the comparison, one child run per remedy and one grandchild per fold; the parent holds the tables, the figures and
the strength curves.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import names
from core.config import Config, fold_config, mapping, parse_overrides, read_yaml
from core.errors import ConfigError, UserError
from core.schema import Key, at_least, sections

BASELINE = "baseline"
DEFAULT_REPEATS = 3  # 3 x 10 folds of the default spec train in a few minutes on 2 CPU cores
# Every key an experiment spec takes, declared once: load_experiment reads its defaults and bounds, `keys` lists it.
EXPERIMENT_KEYS = {
    "name": Key("the comparison's name: its MLflow parent run", shown_default="the spec file's name"),
    "config": Key("the base config of every remedy: config keys as a mapping (no split.*: the folds are made here)",
                  default={}),
    "remedies.<name>": Key(f"a remedy: the config keys it changes from the base config; `{BASELINE}` (required) "
                           "changes none", default={}),
    "k": Key("folds of each repeat (K-fold, stratified for class labels)", default=5, values=at_least(2)),
    "repeats": Key("repeats of the K folds, repeat r with seed + r", default=DEFAULT_REPEATS, values=at_least(1)),
    "seed": Key("the seed of repeat 0 (seed=N on the command line wins)", shown_default="config's seed"),
    "sweeps.<remedy>.key": Key("a config key whose strength to sweep for that remedy (exploratory: no test)",
                               shown_default="(required)"),
    "sweeps.<remedy>.values": Key("the values of the sweep, each trained on the same folds",
                                  shown_default="(required)"),
}
SPEC_KEYS = sections(EXPERIMENT_KEYS)
METRICS = ("train", "val", "gap", "test")  # of the compared metric: the CSV and the runs name them train_acc, ...
COLUMNS = ["remedy", "train", "train_std", "val", "val_std", "gap", "gap_std", "test",
           "test_std", "epochs", "seconds", "seconds_mean", "seconds_std", "val_diff", "val_diff_low",
           "val_diff_high", "val_p", "val_p_holm", "gap_diff", "gap_diff_low", "gap_diff_high", "test_diff", "rank",
           "test_rank", "disagrees"]


@dataclass(frozen=True)
class Compared:
    """The metric a comparison judges by: the task's main one, better higher (acc: shown in %) or lower (rmse)."""

    name: str = "acc"

    @classmethod
    def of(cls, config: Config) -> Compared:
        return cls(names.main_metric(config.task))

    @property
    def maximize(self) -> bool:
        return names.direction(self.name) == "maximize"

    @property
    def percent(self) -> bool:  # the maximized ones are fractions of samples (accuracy, F1)
        return self.maximize

    def better(self, value: float) -> float:
        """A key that sorts the best first."""
        return -value if self.maximize else value

    def column(self, key: str) -> str:
        """A table key as the CSV and the runs name it: val -> val_acc, val_std -> val_acc_std; gap stays."""
        part, _, rest = key.partition("_")
        return f"{part}_{self.name}" + (f"_{rest}" if rest else "") if part in ("train", "val", "test") \
            and rest in ("", "std") else key

    def shown(self, value: float, signed: bool = False) -> str:
        """In points of % for fractions, else as it is (4 significant digits)."""
        return f"{100 * value:{'+' if signed else ''}.1f}" if self.percent else f"{value:{'+' if signed else ''}.4g}"


@dataclass
class Remedy:
    name: str
    overrides: dict[str, Any]
    config: Config


@dataclass
class ExperimentSpec:
    name: str
    base: Config
    remedies: list[Remedy]
    k: int = EXPERIMENT_KEYS["k"].default
    seed: int = 0
    sweeps: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)
    repeats: int = EXPERIMENT_KEYS["repeats"].default

    @property
    def metric(self) -> Compared:
        return Compared.of(self.base)


@dataclass
class FoldResult:
    """One fold's scores on the compared metric (final_train_<m>, final_val_<m>, test_<m>)."""

    train: float
    val: float
    test: float
    epochs: int
    seconds: float  # training only: the epochs' own time, without data loading, final evaluation or logging
    history: list[dict[str, float]]
    n_train: int
    n_val: int
    maximize: bool = True

    @property
    def gap(self) -> float:
        """How much better the model does on its training part than on validation (overfitting: > 0)."""
        return self.train - self.val if self.maximize else self.val - self.train


@dataclass
class PairedTest:
    """A remedy minus the baseline over the same folds: mean difference, its 95% CI, two-sided p-value."""

    difference: float
    low: float
    high: float
    p: float


@dataclass
class SweepPoint:
    value: Any
    run: str  # the job whose folds these are: a remedy's name when the point is that remedy
    folds: list[FoldResult]


@dataclass
class ComparisonResult:
    spec: ExperimentSpec
    folds: dict[str, list[FoldResult]]
    table: list[dict[str, Any]]
    sweeps: dict[str, list[SweepPoint]]
    parent_run_id: str = ""
    resumption: Resumption | None = None  # what it found in the store: a comparison gone on in, or a new one
    report_page: str = ""  # its report page (mlruns/reports/<name>.html), "" when none was written


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                    shorter: dict[str, Any] | None = None) -> ExperimentSpec:
    """Read and check an experiment spec; every problem is one ConfigError before anything runs. `shorter`: the
    command line's k, repeats and remedies (names), in place of the spec's and checked as they are."""
    document = read_yaml(path)
    unknown = set(document) - set(SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} (expected {', '.join(SPEC_KEYS)})")
    document = _shortened(document, shorter or {})
    command_line = parse_overrides(overrides)
    if any(key.startswith("split.") for key in command_line):
        raise ConfigError("split.*: a comparison makes its own folds; set `k` and `repeats` in the spec "
                          "(or --k, --repeats)")
    base = Config().apply(mapping(path, "config", document.get("config"))).apply(command_line).validate()
    k, repeats = _whole(document, "k"), _whole(document, "repeats")
    seed = base.seed if "seed" in command_line else _whole(document, "seed", base.seed)  # seed=1 wins
    base.seed = seed
    # repeat r's folds: seed + r; stratified where the task's targets are classes
    stratified = names.task_names(base.task).stratified
    base.split.kind, base.split.k, base.split.seed = "stratified_kfold" if stratified else "kfold", k, -1
    base.validate()
    remedies_doc = document.get("remedies")
    if not isinstance(remedies_doc, dict) or BASELINE not in remedies_doc:
        raise ConfigError(f"{path}: `remedies:` must map names to overrides and include `{BASELINE}`")
    remedies = [_remedy(name, overrides, base) for name, overrides in remedies_doc.items()]
    sweeps = {}
    for name, sweep in mapping(path, "sweeps", document.get("sweeps")).items():
        if name not in remedies_doc:
            raise ConfigError(f"sweeps.{name}: no remedy of that name")
        if not isinstance(sweep, dict) or "key" not in sweep or not isinstance(sweep.get("values"), list) \
                or not sweep["values"]:
            raise ConfigError(f"sweeps.{name}: give a key and a list of values, "
                              f"e.g. {{key: reg.l1, values: [1e-5, 1e-4]}}")
        for value in sweep["values"]:
            _remedy(f"{name} at {value}", {**(remedies_doc[name] or {}), sweep["key"]: value}, base)
        sweeps[name] = (sweep["key"], list(sweep["values"]))
    return ExperimentSpec(str(document.get("name") or Path(path).stem), base, remedies, k, seed, sweeps, repeats)


def _shortened(document: dict[str, Any], shorter: dict[str, Any]) -> dict[str, Any]:
    """The spec with the command line's `k` and `repeats` in place of its own, and only the `remedies` named
    (the baseline always: everything is compared with it), with their sweeps."""
    document = {**document, **{key: shorter[key] for key in ("k", "repeats") if shorter.get(key) is not None}}
    names = shorter.get("remedies")
    if names is None:
        return document
    known = document.get("remedies") if isinstance(document.get("remedies"), dict) else {}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ConfigError(f"--remedies: {'no remedy named ' + repr(unknown[0]) if unknown else 'give one or more'} "
                          f"(the spec's: {', '.join(known)})")
    kept = [BASELINE, *[name for name in names if name != BASELINE]]
    document["remedies"] = {name: known[name] for name in kept if name in known}
    document["sweeps"] = {name: sweep for name, sweep in (document.get("sweeps") or {}).items() if name in kept}
    return document


def _whole(document: dict[str, Any], key: str, default: int | None = None) -> int:
    """A whole-number key of the spec, its declared default and lower bound (seed: checked as the config's)."""
    declared = EXPERIMENT_KEYS[key]
    value = document.get(key, declared.default if default is None else default)
    if isinstance(value, bool) or not isinstance(value, int) or (declared.values and not declared.values.holds(value)):
        bound = f" of at least {declared.values.low}" if declared.values else ""
        raise ConfigError(f"{key}: expected a whole number{bound}, got {value!r}")
    return value


def _remedy(name: str, overrides: Any, base: Config) -> Remedy:
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"remedy {name!r}: expected a mapping of config keys to values")
    config = base.copy()
    try:
        config.apply(overrides).validate()
    except ConfigError as error:
        raise ConfigError(f"remedy {name!r}: {error}") from None
    if name != BASELINE and config == base:
        raise ConfigError(f"remedy {name!r} changes nothing from the base config")
    return Remedy(name, dict(overrides), config)


def corrected_t_test(differences: list[float] | np.ndarray, test_train_ratio: float,
                     confidence: float = 0.95) -> PairedTest:
    """Nadeau and Bengio's corrected resampled t-test of J paired differences from resampled (e.g. R x K fold) splits.

    Overlapping training sets correlate the differences, so var/J understates the variance of their mean; the
    correction uses var * (1/J + n_val/n_train) (Nadeau and Bengio 2003), with t on J - 1 degrees of freedom.
    """
    from scipy import stats

    differences = np.asarray(differences, dtype=float)
    count, mean = len(differences), float(np.mean(differences))
    if count < 2:
        raise ValueError("a paired test needs at least two differences")
    if np.allclose(differences, differences[0]):  # no spread: no difference gives p = 1, a constant one p = 0
        return PairedTest(mean, mean, mean, 1.0 if np.isclose(mean, 0) else 0.0)
    error = math.sqrt(np.var(differences, ddof=1) * (1 / count + test_train_ratio))
    distribution = stats.t(count - 1)
    half_width = float(distribution.ppf(0.5 + confidence / 2)) * error
    p_value = float(2 * distribution.sf(abs(mean) / error))
    return PairedTest(mean, mean - half_width, mean + half_width, p_value)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: controls the chance of any false 'significant' among all the remedies."""
    from statsmodels.stats.multitest import multipletests

    if not p_values:
        return []
    return [float(p) for p in multipletests(p_values, method="holm")[1]]


def summarize(folds: dict[str, list[FoldResult]], compared: Compared = Compared()) -> list[dict[str, Any]]:
    """One row per remedy: means and stds over folds, corrected paired tests against the baseline, and ranks
    (best first in the metric's direction)."""
    baseline = folds[BASELINE]
    ratio = float(np.mean([r.n_val for r in baseline]) / np.mean([r.n_train for r in baseline]))
    rows = []
    for name, results in folds.items():
        row: dict[str, Any] = {"remedy": name}
        for metric in METRICS:
            row[metric], row[f"{metric}_std"] = _mean_std([getattr(result, metric) for result in results])
        row["epochs"] = float(np.mean([r.epochs for r in results]))
        # The median: another process on the machine can slow a few folds' epochs a hundredfold.
        row["seconds"] = float(np.median([r.seconds for r in results]))
        row["seconds_mean"], row["seconds_std"] = _mean_std([r.seconds for r in results])
        row.update(_against_baseline(results, baseline, ratio))
        if name == BASELINE:  # not tested against itself
            row["val_p"] = math.nan
        rows.append(row)
    tested = [row for row in rows if row["remedy"] != BASELINE]
    for row, adjusted in zip(tested, holm([row["val_p"] for row in tested]), strict=True):
        row["val_p_holm"] = adjusted
    for key, rank_key in (("val", "rank"), ("test", "test_rank")):
        for rank, row in enumerate(sorted(rows, key=lambda r: compared.better(r[key])), start=1):
            row[rank_key] = rank
    base_test = next(row["test"] for row in rows if row["remedy"] == BASELINE)
    for row in rows:  # better than the baseline on validation and worse on the test part, or the reverse
        row["test_diff"] = row["test"] - base_test
        row["disagrees"] = bool(row["val_diff"] * row["test_diff"] < 0)
    return rows


def _against_baseline(results: list[FoldResult], baseline: list[FoldResult], ratio: float) -> dict[str, float]:
    """Paired differences in the validation metric (tested) and gap (interval only), as table entries."""
    entries = {"val_p_holm": math.nan}
    for metric, prefix in (("val", "val"), ("gap", "gap")):
        differences = [getattr(r, metric) - getattr(b, metric) for r, b in zip(results, baseline, strict=True)]
        test = corrected_t_test(differences, ratio)
        entries.update({f"{prefix}_diff": test.difference, f"{prefix}_diff_low": test.low,
                        f"{prefix}_diff_high": test.high})
        if prefix == "val":
            entries["val_p"] = test.p
    return entries


def _mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1) if len(values) > 1 else 0.0)


def markdown_table(rows: list[dict[str, Any]], metric: Compared = Compared()) -> str:
    """The table alone, by validation rank; fractions in %, their differences in points; † see `_disagreement`."""
    m = metric.name
    gap = "train - val" if metric.maximize else "val - train"
    header = (f"| rank | remedy | val {m} | Δ val {m} [95% CI] | p | p (Holm) | test {m} (rank) | train {m} "
              f"| gap ({gap}) | Δ gap [95% CI] | epochs | seconds per fold |")
    lines = [header, "|" + "---|" * 12]
    for row in sorted(rows, key=lambda r: r["rank"]):
        baseline = row["remedy"] == BASELINE
        flag = " †" if row["disagrees"] else ""
        val_test = ("-", "-", "-") if baseline else (_interval(row, "val", metric), _p(row["val_p"]),
                                                     _p(row["val_p_holm"]))
        lines.append(f"| {row['rank']} | {row['remedy']}{flag} | {_pm(row, 'val', metric)} | {' | '.join(val_test)} "
                     f"| {metric.shown(row['test'])} ({row['test_rank']}) | {_pm(row, 'train', metric)} "
                     f"| {_pm(row, 'gap', metric)} "
                     f"| {'-' if baseline else _interval(row, 'gap', metric)} | {row['epochs']:.1f} "
                     f"| {row['seconds']:.2f} |")
    return "\n".join(lines)


def table_note(result: ComparisonResult) -> str:
    """What the numbers are: the design, the test, the adjustment, and where validation and test disagree."""
    spec, baseline, metric = result.spec, result.folds[BASELINE], result.spec.metric
    count, tested = len(baseline), len(result.folds) - 1
    n_val, n_train = _span([r.n_val for r in baseline]), _span([r.n_train for r in baseline])
    ratio = np.mean([r.n_val for r in baseline]) / np.mean([r.n_train for r in baseline])
    image = 100 / np.mean([r.n_val for r in baseline])
    kind = "stratified cross-validation" if spec.base.split.kind == "stratified_kfold" else "cross-validation"
    units = (f"{metric.name} in %" if metric.percent else f"{metric.name} in the targets' units (lower is better)")
    one = f" (one sample is {image:.1f} points)" if metric.name == "acc" else ""
    return "\n".join([
        f"{units}, mean ± standard deviation over {count} folds: {_count(spec.repeats, 'repeat')} of "
        f"{spec.k}-fold {kind}, the same folds and seeds for every remedy. Each fold validates "
        f"on {n_val} samples{one} and trains on {n_train}; test {metric.name}: the fold models on "
        "the fixed test part, rank by mean in parentheses.",
        f"Δ: mean paired difference to the baseline over the {count} folds{', in points' if metric.percent else ''}, "
        f"with its 95% confidence interval; p: two-sided Nadeau-Bengio corrected resampled t-test on validation "
        f"{metric.name} (variance of the "
        f"differences × (1/{count} + {ratio:.3g}), t with {count - 1} degrees of freedom), which allows for the "
        f"overlapping training sets that make a plain paired t-test too optimistic; p (Holm): adjusted with Holm's "
        f"method over the {_count(tested, 'remedy', 'remedies')}. The intervals are not adjusted for multiplicity.",
        _disagreement(result.table, metric),
        "Seconds per fold: the median over folds of the epochs' training time (no data loading, final evaluation, "
        "logging or warm-up); the median because other processes on the machine can slow a few folds a hundredfold "
        "(the CSV has the mean and std too).",
    ])


def _disagreement(rows: list[dict[str, Any]], metric: Compared) -> str:
    flagged = [f"{row['remedy']} ({metric.shown(row['val_diff'], True)} on validation, "
               f"{metric.shown(row['test_diff'], True)} on test)"
               for row in sorted(rows, key=lambda r: r["rank"]) if row["disagrees"]]
    best_val, best_test = min(rows, key=lambda r: r["rank"]), min(rows, key=lambda r: r["test_rank"])
    return ("† better than the baseline on validation but worse on the test part, or the reverse: "
            + ("; ".join(flagged) if flagged else "none") + f". Best on validation: {best_val['remedy']} "
            f"(test rank {best_val['test_rank']}); best on the test part: {best_test['remedy']} "
            f"(validation rank {best_test['rank']}).")


def _count(number: int, singular: str, plural: str = "") -> str:
    return f"{number} {singular if number == 1 else plural or singular + 's'}"


def sweep_table(key: str, points: list[SweepPoint], baseline: list[FoldResult], metric: Compared = Compared()) -> str:
    """A sweep's strength against the scores (exploratory: no test, no adjustment), under the baseline's."""
    lines = [f"| {key} | val {metric.name} | gap | test {metric.name} | folds from |", "|" + "---|" * 5]
    for value, folds, source in [("-", baseline, BASELINE)] + [(p.value, p.folds, p.run) for p in points]:
        cells = [_pm_of([getattr(r, part) for r in folds], metric) for part in ("val", "gap", "test")]
        lines.append(f"| {value} | {' | '.join(cells)} | {source} |")
    return "\n".join(lines)


def markdown_report(result: ComparisonResult) -> str:
    """The table, its note, and one table per sweep: what the command prints and the parent run keeps."""
    parts = [markdown_table(result.table, result.spec.metric), "", table_note(result)]
    for name, points in result.sweeps.items():
        key = result.spec.sweeps[name][0]
        parts += ["", f"Sweep of {name} over {key} (exploratory, mean ± std over the same folds):", "",
                  sweep_table(key, points, result.folds[BASELINE], result.spec.metric)]
    return "\n".join(parts)


def _pm(row: dict[str, Any], key: str, metric: Compared) -> str:
    return f"{metric.shown(row[key])} ± {metric.shown(row[f'{key}_std'])}"


def _pm_of(values: list[float], metric: Compared) -> str:
    mean, std = _mean_std(values)
    return f"{metric.shown(mean)} ± {metric.shown(std)}"


def _interval(row: dict[str, Any], prefix: str, metric: Compared) -> str:
    return (f"{metric.shown(row[f'{prefix}_diff'], True)} [{metric.shown(row[f'{prefix}_diff_low'], True)}, "
            f"{metric.shown(row[f'{prefix}_diff_high'], True)}]")


def _p(value: float) -> str:
    return f"{value:.2f}" if value >= 0.01 else f"{value:.3f}" if value >= 0.001 else "<0.001"


def _span(values: list[int]) -> str:
    return str(min(values)) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def csv_table(rows: list[dict[str, Any]], metric: Compared = Compared()) -> str:
    import pandas as pd

    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("rank")
    return table.rename(columns={key: metric.column(key) for key in COLUMNS}).to_csv(index=False)


def plan_jobs(spec: ExperimentSpec) -> tuple[list[tuple[str, Config, dict[str, Any]]], dict[str, list[str]]]:
    """The (name, config, overrides) to train: every remedy, then each sweep point that is no remedy already;
    and for each sweep, the job whose folds each of its points reuses."""
    jobs = [(r.name, r.config, r.overrides) for r in spec.remedies]
    sources: dict[str, list[str]] = {}
    for name, (key, values) in spec.sweeps.items():
        remedy = next(r for r in spec.remedies if r.name == name)
        sources[name] = []
        for value in values:
            config = _with(remedy.config, key, value)
            same = next((job_name for job_name, job_config, _ in jobs if job_config == config), None)
            if same is None:  # not trained yet; an equal config would give the same folds, so it is reused
                same = f"{name}@{value}"
                jobs.append((same, config, {**remedy.overrides, key: value}))
            sources[name].append(same)
    return jobs, sources


def run_comparison(spec: ExperimentSpec, progress: bool = False,
                   on_start: Callable[[Resumption], None] | None = None) -> ComparisonResult:
    """Train every remedy on every fold of every repeat, log it all, and return the table. An unfinished run of the
    same comparison is gone on in (`find_resumable`); `on_start` is told which, or that it is a new one."""
    from tqdm.auto import tqdm

    from core.runs import Place, open_run
    from core.train import prepare

    for remedy in spec.remedies:  # every remedy's data and model are checked before anything is logged
        prepare(fold_config(remedy.config, 0))
    jobs, sources = plan_jobs(spec)
    resumption = find_resumable(spec, jobs)  # creates the experiment (and the store's schema) when it is new
    if on_start is not None:
        on_start(resumption)
    started = time.perf_counter()
    warm_up(jobs)
    warm_up_seconds = time.perf_counter() - started
    bar = tqdm(total=len(jobs) * spec.repeats * spec.k, desc=f"compare {spec.name}", unit="fold",
               disable=not progress)
    tags = {"kind": "comparison", FINGERPRINT_TAG: resumption.fingerprint}
    place = Place(spec.name, f"compare {spec.name}", tags=tags, reopen=resumption.parent_run_id)
    with bar, open_run(place) as parent:
        with parent.recorder() as record:
            record.log_params({**spec.base.to_params(), "compare.k": spec.k, "compare.repeats": spec.repeats,
                               "compare.remedies": ",".join(r.name for r in spec.remedies)})
            # Closing sends it now: the sender thread's first send (imports, SQL) is over before any fold is timed.
            record.log_metrics({"warm_up_seconds": warm_up_seconds}, step=0)
        folds = {name: _train_remedy(spec, Job(name, config, overrides), parent, bar, resumption.groups.get(name, ""))
                 for name, config, overrides in jobs}
        main = {r.name: folds[r.name] for r in spec.remedies}
        sweeps = {name: [SweepPoint(value, source, folds[source]) for value, source in zip(values, sources[name])]
                  for name, (_, values) in spec.sweeps.items()}
        result = ComparisonResult(spec, main, summarize(main, spec.metric), sweeps, parent.id, resumption)
        _log_parent(result, parent)
        result.report_page = _write_page(spec.name, parent.id)
    return result


def _write_page(name: str, parent_run_id: str) -> str:
    """The comparison's report page (core/compare_page.py), from what `_log_parent` logged; its path, or "" when it
    could not be made (the comparison stands without it, but not through an outage)."""
    from core.compare_page import write_comparison_report
    from core.outages import best_effort

    with best_effort("the comparison's report page was not written"):
        return str(write_comparison_report(name, parent_run_id))
    return ""


def warm_up(jobs: list[tuple[str, Config, dict[str, Any]]]) -> None:
    """One untracked epoch of every job before anything is timed: imports, data loading and the first calls
    (oneDNN compiles its kernels for each new layer and batch shape) would land in the first fold's seconds."""
    from core.train import fit

    for _, config, _ in jobs:
        short = fold_config(config, 0)
        short.train.epochs, short.track.figures, short.track.log_model = 1, False, False
        fit(short)


@dataclass(frozen=True)
class Job:
    name: str  # a remedy, or a sweep point (remedy@value)
    config: Config
    overrides: dict[str, Any]


def _train_remedy(spec: ExperimentSpec, job: Job, parent, bar, reopen: str = "") -> list[FoldResult]:
    """The remedy's group run (a child of the comparison) with a run per fold of every repeat. `reopen`: the
    group of a resumed comparison, whose finished folds are reused (read back, not trained)."""
    from core.runs import FitHooks, Place, fit_folds, open_run
    from core.runs.folds import fold_plan

    tags = {"remedy": job.name, "overrides": repr(job.overrides)[:5000]}
    results: list[FoldResult] = []

    def after_fold(plan, tracked) -> bool:
        where = plan.place.tags
        if tracked.result.stop.reason == "non_finite":  # no scores to compare: say which fold, and why
            raise UserError(f"remedy {job.name!r}, repeat {where['repeat']}, fold {where['fold']}: training "
                            f"diverged ({tracked.result.stop.detail}); give this remedy a smaller learning rate")
        results.append(_fold_result(tracked, spec.metric))
        bar.update(1)
        return True

    place = Place(spec.name, f"remedy {job.name}", parent.id, {**tags, "kind": "remedy"}, reopen=reopen)
    with open_run(place) as group:
        plans = [fold_plan(group, job.name, fold_config(job.config, fold, repeat), tags,
                           {"repeat": repeat, "fold": fold})
                 for repeat in range(spec.repeats) for fold in range(spec.k)]
        fit_folds(plans, FitHooks(), after_fold, reuse=bool(reopen))
        with group.recorder() as summary:
            summary.log_params({**job.config.to_params(), "remedy": job.name, "compare.k": spec.k,
                                "compare.repeats": spec.repeats})
            summary.log_metrics({f"{spec.metric.column(m)}_mean": float(np.mean([getattr(r, m) for r in results]))
                                 for m in METRICS}
                                | {"seconds_median": float(np.median([r.seconds for r in results]))}, step=0)
    return results


def _with(config: Config, key: str, value: Any) -> Config:
    changed = config.copy()
    changed.set(key, value)
    return changed.validate()


def _fold_result(tracked, metric: Compared) -> FoldResult:
    result, n_train, n_val = tracked.result, len(tracked.prepared.train_idx), len(tracked.prepared.val_idx)
    metrics, name = result.metrics, metric.name
    seconds = float(sum(epoch["epoch_seconds"] for epoch in result.history))  # training, not the store's time
    return FoldResult(metrics[f"final_train_{name}"], metrics[f"final_val_{name}"], metrics[f"test_{name}"],
                      result.epochs_run, seconds, result.history, n_train, n_val, metric.maximize)


def _log_parent(result: ComparisonResult, parent) -> None:
    """The tables, the figures, and per remedy its scores and test against the baseline, on the parent run."""
    from core import report
    from core.names import safe_name
    from core.runs.run import NOTE_TAG

    ranked = {row["remedy"]: result.folds[row["remedy"]] for row in sorted(result.table, key=lambda r: r["rank"])}
    text, metric = markdown_report(result), result.spec.metric
    with parent.recorder() as tracker:
        tracker.log_text(text, "comparison.md")
        tracker.log_text(csv_table(result.table, metric), "comparison.csv")
        tracker.log_figure(report.remedy_curves(ranked, metric=metric.name), "curves.png")
        tracker.log_figure(report.fold_box_plot(ranked, metric=metric.name), "fold_scores.png")
        for name, points in result.sweeps.items():
            key, filename = result.spec.sweeps[name][0], safe_name(name)
            tracker.log_text(sweep_table(key, points, result.folds[BASELINE], metric), f"sweep_{filename}.md")
            strengths = [(point.value, [r.val for r in point.folds]) for point in points]
            figure = report.strength_curve(name, key, strengths, [r.val for r in result.folds[BASELINE]],
                                           metric=metric.name)
            tracker.log_figure(figure, f"strength_{filename}.png")
        for row in result.table:
            prefix = safe_name(row["remedy"])
            keys = ["val", "gap", "test", "seconds"] + ([] if row["remedy"] == BASELINE else [
                "val_diff", "val_diff_low", "val_diff_high", "val_p", "val_p_holm"])
            tracker.log_metrics({f"{prefix}.{metric.column(key)}": row[key] for key in keys}, step=0)
    spec = result.spec
    parent.set_tags({NOTE_TAG: f"## Comparison `{spec.name}` ({spec.repeats} x {spec.k} folds)\n\n{text}"})


# Resuming. A rerun of the same comparison (same spec, overrides and user code: one fingerprint, a tag of its parent
# run) goes on in the unfinished parent run and its remedy runs, and reuses the folds that FINISHED there
# (runs.fit_folds reads them back; `_fold_result` reads their metrics as it reads a trained fold's). Kept apart from
# the statistics and tables above, which do not know whether a fold was trained now or read back.

FINGERPRINT_TAG = "fingerprint"
UNFINISHED = ("FAILED", "KILLED")  # a killed comparison is FAILED once the stale-run sweep has seen it


@dataclass(frozen=True)
class Resumption:
    """What a comparison found in the store before training: the facts the CLI prints."""

    fingerprint: str
    parent_run_id: str = ""  # the unfinished comparison of this fingerprint that goes on; "" starts a new one
    groups: dict[str, str] = field(default_factory=dict)  # its remedy runs by job name (remedy, remedy@value)
    finished_folds: int = 0  # its fold runs that FINISHED: reused, not trained again
    total_folds: int = 0
    changed: str = ""  # the latest comparison of this name, unfinished and left alone: its spec or code differ


def fingerprint(spec: ExperimentSpec, jobs: list[tuple[str, Config, dict[str, Any]]]) -> str:
    """What makes two runs one comparison: the folds, every job's whole config (overrides included), the sweeps,
    and the SHA-256 of the user's code the jobs import (a changed model file makes another comparison)."""
    import hashlib
    import json

    from core import user_code

    code = {source.relative: source.sha256 for _, config, _ in jobs
            for source in user_code.sources(config.user_references())}
    content = {"k": spec.k, "repeats": spec.repeats, "seed": spec.seed, "sweeps": spec.sweeps, "code": code,
               "jobs": [[name, config.to_flat(), overrides] for name, config, overrides in jobs]}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=repr).encode()).hexdigest()


def find_resumable(spec: ExperimentSpec, jobs: list[tuple[str, Config, dict[str, Any]]]) -> Resumption:
    """Runs left RUNNING by dead processes are marked FAILED first; then the newest comparison of this name with
    this fingerprint goes on if it did not finish, with its remedy runs and their finished folds."""
    from core.runs.logged import children, finished_children, runs_tagged
    from core.runs.run import sweep_stale_runs

    sweep_stale_runs([spec.name])  # creates the experiment (and the store's schema) when it is new
    mark, total = fingerprint(spec, jobs), len(jobs) * spec.repeats * spec.k
    comparisons = runs_tagged(spec.name, "kind", "comparison")
    same = next((run for run in comparisons if run.tags.get(FINGERPRINT_TAG) == mark), None)
    if same is None or same.status not in UNFINISHED:
        latest = comparisons[0] if comparisons else None
        changed = latest.id if latest and latest.status in UNFINISHED and latest is not same else ""
        return Resumption(mark, total_folds=total, changed=changed)
    names = {name for name, _, _ in jobs}
    groups = {child.tags["remedy"]: child.id for child in reversed(children(spec.name, same.id))  # newest wins
              if child.tags.get("kind") == "remedy" and child.tags.get("remedy") in names}
    finished = sum(len(finished_children(spec.name, group)) for group in groups.values())
    return Resumption(mark, same.id, groups, finished, total)
