"""Compare overfitting remedies on the same K folds, with paired statistics against the baseline.

Every remedy is a set of config overrides on one base config. Each is trained
on the same stratified folds with the same seed, so fold i of a remedy and fold
i of the baseline differ only by the remedy: a paired design. MLflow gets one
parent run for the comparison, one child run per remedy and one grandchild per
fold; the parent holds the table, the figures and the strength curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.config import Config, parse_overrides, read_yaml
from core.errors import ConfigError

BASELINE = "baseline"
COLUMNS = ["remedy", "train_acc", "train_acc_std", "val_acc", "val_acc_std", "gap", "gap_std", "test_acc",
           "test_acc_std", "epochs", "seconds", "gap_p", "gap_d", "val_p", "val_d", "rank"]


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
    k: int = 5
    seed: int = 0
    sweeps: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)


@dataclass
class FoldResult:
    train_acc: float
    val_acc: float
    test_acc: float
    epochs: int
    seconds: float
    history: list[dict[str, float]]

    @property
    def gap(self) -> float:
        return self.train_acc - self.val_acc


@dataclass
class ComparisonResult:
    spec: ExperimentSpec
    folds: dict[str, list[FoldResult]]
    table: list[dict[str, Any]]
    sweeps: dict[str, list[tuple[Any, float, float]]]  # remedy -> (strength, mean val acc, std)
    parent_run_id: str = ""


def load_experiment(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentSpec:
    """Read and check an experiment spec; every problem is one ConfigError before anything runs."""
    document = read_yaml(path)
    unknown = set(document) - {"name", "config", "remedies", "k", "seed", "sweeps"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} "
                          f"(expected name, config, remedies, k, seed, sweeps)")
    base = Config().apply(document.get("config") or {}).apply(parse_overrides(overrides)).validate()
    k, seed = int(document.get("k", 5)), int(document.get("seed", base.seed))
    base.seed = seed
    base.split.kind, base.split.k = "stratified_kfold", k
    base.validate()
    remedies_doc = document.get("remedies")
    if not isinstance(remedies_doc, dict) or BASELINE not in remedies_doc:
        raise ConfigError(f"{path}: `remedies:` must map names to overrides and include `{BASELINE}`")
    remedies = [_remedy(name, overrides, base) for name, overrides in remedies_doc.items()]
    sweeps = {}
    for name, sweep in (document.get("sweeps") or {}).items():
        if name not in remedies_doc:
            raise ConfigError(f"sweeps.{name}: no remedy of that name")
        if not isinstance(sweep, dict) or "key" not in sweep or not sweep.get("values"):
            raise ConfigError(f"sweeps.{name}: give a key and a list of values, "
                              f"e.g. {{key: reg.l1, values: [1e-5, 1e-4]}}")
        for value in sweep["values"]:
            _remedy(f"{name} at {value}", {**(remedies_doc[name] or {}), sweep["key"]: value}, base)
        sweeps[name] = (sweep["key"], list(sweep["values"]))
    return ExperimentSpec(str(document.get("name") or Path(path).stem), base, remedies, k, seed, sweeps)


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


def fold_config(config: Config, fold: int) -> Config:
    folded = config.copy()
    folded.split.fold = fold
    return folded


def paired_test(remedy: list[float], baseline: list[float]) -> tuple[float, float]:
    """(p-value of a two-sided paired t-test, Cohen's d_z = mean / std of the paired differences)."""
    from scipy import stats

    differences = np.asarray(remedy, dtype=float) - np.asarray(baseline, dtype=float)
    if len(differences) < 2 or np.allclose(differences, differences[0]):
        return (1.0 if np.allclose(differences, 0) else 0.0), (0.0 if np.allclose(differences, 0) else math.inf)
    p_value = float(stats.ttest_rel(remedy, baseline).pvalue)
    return p_value, float(differences.mean() / differences.std(ddof=1))


def summarize(folds: dict[str, list[FoldResult]]) -> list[dict[str, Any]]:
    """One row per remedy: means and stds over folds, paired tests against the baseline, and a rank."""
    baseline = folds[BASELINE]
    rows = []
    for name, results in folds.items():
        row: dict[str, Any] = {"remedy": name}
        for metric in ("train_acc", "val_acc", "gap", "test_acc"):
            values = [getattr(result, metric) for result in results]
            row[metric] = float(np.mean(values))
            row[f"{metric}_std"] = float(np.std(values, ddof=1) if len(values) > 1 else 0.0)
        row["epochs"] = float(np.mean([r.epochs for r in results]))
        row["seconds"] = float(np.sum([r.seconds for r in results]))
        row["gap_p"], row["gap_d"] = paired_test([r.gap for r in results], [r.gap for r in baseline])
        row["val_p"], row["val_d"] = paired_test([r.val_acc for r in results], [r.val_acc for r in baseline])
        rows.append(row)
    for rank, row in enumerate(sorted(rows, key=lambda r: -r["val_acc"]), start=1):
        row["rank"] = rank
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = ("| rank | remedy | train acc | val acc | gap (train - val) | test acc | epochs | seconds "
              "| gap vs baseline: p, d | val acc vs baseline: p, d |")
    lines = [header, "|" + "---|" * 10]
    for row in sorted(rows, key=lambda r: r["rank"]):
        tests = ("-", "-") if row["remedy"] == BASELINE else (
            f"{row['gap_p']:.3g}, {row['gap_d']:+.2f}", f"{row['val_p']:.3g}, {row['val_d']:+.2f}")
        lines.append(f"| {row['rank']} | {row['remedy']} | {_pm(row, 'train_acc')} | {_pm(row, 'val_acc')} "
                     f"| {_pm(row, 'gap')} | {_pm(row, 'test_acc')} | {row['epochs']:.1f} | {row['seconds']:.1f} "
                     f"| {tests[0]} | {tests[1]} |")
    lines.append("")
    lines.append("Means ± standard deviations over the folds. p: two-sided paired t-test across folds against the "
                 "baseline; d: Cohen's d_z (mean paired difference / its standard deviation).")
    return "\n".join(lines)


def _pm(row: dict[str, Any], key: str) -> str:
    return f"{row[key]:.4f} ± {row[f'{key}_std']:.4f}"


def csv_table(rows: list[dict[str, Any]]) -> str:
    import pandas as pd

    return pd.DataFrame(rows, columns=COLUMNS).sort_values("rank").to_csv(index=False)


def run_comparison(spec: ExperimentSpec, progress: bool = False) -> ComparisonResult:
    """Train every remedy on every fold, log it all, and return the table."""
    from tqdm.auto import tqdm

    from core.tracked import tracked_fit
    from core.tracking import mlflow_store
    from core.tracking.mlflow_sink import MLflowTracker
    from core.train import prepare

    for remedy in spec.remedies:  # every remedy's data and model are checked before anything is logged
        prepare(fold_config(remedy.config, 0))
    mlflow_store.client()
    experiment_id = mlflow_store.experiment_id(spec.name)
    mlflow_store.fail_stale_runs([experiment_id])
    jobs = [(r.name, r.config, r.overrides) for r in spec.remedies]
    for name, (key, values) in spec.sweeps.items():
        remedy = next(r for r in spec.remedies if r.name == name)
        jobs += [(f"{name}@{value}", _with(remedy.config, key, value), {**remedy.overrides, key: value})
                 for value in values]
    folds: dict[str, list[FoldResult]] = {}
    bar = tqdm(total=len(jobs) * spec.k, desc=f"compare {spec.name}", unit="fold", disable=not progress)
    with bar, mlflow_store.open_run(spec.name, f"compare {spec.name}", {"kind": "comparison"}) as parent_run_id:
        MLflowTracker(parent_run_id, spec.name).log_params(
            {**spec.base.to_flat(), "compare.k": spec.k, "compare.remedies": ",".join(r.name for r in spec.remedies)})
        for name, config, overrides in jobs:
            tags = {"remedy": name, "overrides": repr(overrides)[:5000]}
            remedy_tags = {**tags, "kind": "remedy"}
            with mlflow_store.open_run(spec.name, f"remedy {name}", remedy_tags, parent_run_id) as run_id:
                results = []
                for fold in range(spec.k):
                    tracked = tracked_fit(fold_config(config, fold), experiment=spec.name,
                                          run_name=f"{name} fold-{fold}", parent_run_id=run_id,
                                          tags={**tags, "fold": str(fold)}, visdom_label=f"{name} fold {fold}")
                    results.append(_fold_result(tracked.result))
                    bar.update(1)
                folds[name] = results
                summary = MLflowTracker(run_id, spec.name)
                summary.log_params(config.to_flat())
                summary.log_metrics({f"{m}_mean": float(np.mean([getattr(r, m) for r in results]))
                                     for m in ("train_acc", "val_acc", "gap", "test_acc")}, step=0)
                summary.close()
        main = {r.name: folds[r.name] for r in spec.remedies}
        table = summarize(main)
        sweeps = {name: [(value, float(np.mean([r.val_acc for r in folds[f"{name}@{value}"]])),
                          float(np.std([r.val_acc for r in folds[f"{name}@{value}"]], ddof=1)))
                         for value in values] for name, (_, values) in spec.sweeps.items()}
        result = ComparisonResult(spec, main, table, sweeps, parent_run_id)
        _log_parent(result)
    return result


def _with(config: Config, key: str, value: Any) -> Config:
    changed = config.copy()
    changed.set(key, value)
    return changed.validate()


def _fold_result(result) -> FoldResult:
    metrics = result.metrics
    return FoldResult(metrics["final_train_acc"], metrics["final_val_acc"], metrics["test_acc"], result.epochs_run,
                      result.seconds, result.history)


def _log_parent(result: ComparisonResult) -> None:
    from core import report
    from core.tracking import mlflow_store
    from core.tracking.mlflow_sink import MLflowTracker

    tracker = MLflowTracker(result.parent_run_id, result.spec.name)
    table = markdown_table(result.table)
    tracker.log_text(table, "comparison.md")
    tracker.log_text(csv_table(result.table), "comparison.csv")
    tracker.log_figure(report.remedy_curves(result.folds), "curves.png")
    tracker.log_figure(report.fold_box_plot(result.folds), "fold_scores.png")
    for name, points in result.sweeps.items():
        key = result.spec.sweeps[name][0]
        tracker.log_figure(report.strength_curve(name, key, points), f"strength_{mlflow_store.safe_name(name)}.png")
    for row in result.table:
        prefix = mlflow_store.safe_name(row["remedy"])
        tracker.log_metrics({f"{prefix}.val_acc": row["val_acc"], f"{prefix}.gap": row["gap"]}, step=0)
    tracker.close()
    mlflow_store.client().set_tag(result.parent_run_id, mlflow_store.NOTE_TAG,
                                  f"## Comparison `{result.spec.name}` ({result.spec.k} folds)\n\n{table}")
