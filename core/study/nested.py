"""A nested estimate of a study (`study SPEC --outer-folds F`): how well "run this study and take its best" does
on data its search never saw.

The training part is cut into F outer folds (split.outer_*, core/splits.py). In each, the whole study (search and
selection, the spec's budget) runs on the other folds, as its own Optuna study `<name>-outer-<f>-of-<F>` in the
same storage, and its selected (best) trial's model is scored on the held-out fold, which takes the place of the
test part in that study's runs (so the score is the trial's own summary/test_<metric>). The F scores, their mean
and 95% t-interval are the estimate. One parent run; each fold study's parent run is its child, with the fold's
trials under it. Resumable: finished fold studies are reused as they are, an unfinished one goes on.
`nested/nested.json` on the parent run holds the result, its note the summary; last, the estimate's report page
(core/study/page.py) is written to mlruns/reports/<name>.html and logged on the parent run.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace

from core.config import MAX_SEED
from core.errors import ConfigError, UserError
from core.outages import best_effort
from core.runs import Place, Run, open_run
from core.runs.logged import runs_tagged
from core.runs.run import NOTE_TAG, sweep_stale_runs
from core.study import page
from core.study.final import test_metric
from core.study.runner import check_base, run_study
from core.study.spec import StudySpec
from core.study.spread import shown, spread
from core.study.storage import as_logged, check_storage

ARTIFACT = page.NESTED_ARTIFACT  # what the report page reads
KIND = page.NESTED_KIND  # the parent run's kind tag


@dataclass
class NestedOutcome:
    name: str
    storage: str
    parent_run_id: str
    trials: int  # the budget of each fold's study
    result: dict  # nested.json's content
    interrupted: bool = False
    report_page: str = ""  # mlruns/reports/<name>.html, "" when it could not be written


def check_nested(spec: StudySpec, folds: int) -> None:
    """What a nested estimate needs of the spec, torch-free: one line before anything exists."""
    if folds < 2:
        raise UserError(f"--outer-folds={folds}: must be at least 2")
    if spec.multi_objective:
        raise ConfigError("--outer-folds selects each fold's best trial on one objective; a multi-objective study "
                          "has no one best")
    if not spec.metrics[0].startswith("val_"):
        raise ConfigError(f"--outer-folds scores the selected configuration on the held-out fold with the objective's "
                          f"test metric: objective {spec.metrics[0]} has none (use a val_ metric)")
    if spec.folds > 1:
        raise ConfigError("--outer-folds needs a holdout base config (split.kind=holdout): a K-fold trial has no one "
                          "model to score on the held-out fold")


def fold_spec(spec: StudySpec, fold: int, folds: int, within: str = "") -> StudySpec:
    """The study of outer fold `fold`: its own Optuna study, in the estimate's MLflow experiment, its parent run
    under `within`, trained and scored on that fold's parts (no final phase: it selects its best trial)."""
    base = copy.deepcopy(spec.base)
    base.split.outer_k, base.split.outer_fold, base.split.outer_seed = folds, fold, spec.seed % (MAX_SEED + 1)
    return replace(spec, name=f"{spec.name}-outer-{fold}-of-{folds}", base=base, final=None,
                   mlflow_experiment=spec.experiment, within_run=within)


def run_nested(spec: StudySpec, folds: int, storage: str, workers: int = 1,
               gpus: list[str] | None = None) -> NestedOutcome:
    """Run (or go on with) each outer fold's study, then log and return the estimate."""
    check_nested(spec, folds)
    check_base(fold_spec(spec, 0, folds), workers)  # the outer split and the data, before any run exists
    check_storage(storage)
    sweep_stale_runs([spec.experiment])  # a killed estimate's parent is FAILED now, and goes on below
    with open_run(_parent_place(spec, folds, storage)) as parent:
        parent.log_text(page.spec_yaml(spec, outer_folds=folds), page.SPEC_ARTIFACT)
        rows, interrupted = [], False
        for fold in range(folds):
            outcome = run_study(fold_spec(spec, fold, folds, parent.id), storage, workers, progress=True, gpus=gpus)
            rows.append(_fold_row(fold, outcome))
            if outcome.interrupted:  # a worker died: the fold's study goes on at the next run
                interrupted = True
                break
        result = _result(spec, folds, rows)
        report_page = _log_result(spec, parent, result)
        if interrupted:
            parent.conclude("", "FAILED")
    return NestedOutcome(spec.name, storage, parent.id, spec.trials, result, interrupted, report_page)


def _log_result(spec: StudySpec, parent: Run, result: dict) -> str:
    """nested.json, the mean as a metric, the note, and last the report page (its path; "" when it could not be
    written: the estimate stands without it, but not through an outage)."""
    parent.log_text(json.dumps(result, indent=1), ARTIFACT)
    if result["outer"]["mean"] is not None:
        parent.log_values({f"nested/{result['outer_metric']}_mean": result["outer"]["mean"]}, len(result["folds"]))
    parent.set_tags({NOTE_TAG: note(spec, result)})
    with best_effort("the nested estimate's report page was not written"):
        return str(page.write_nested_report(spec.name, parent.id))
    return ""


def note(spec: StudySpec, result: dict) -> str:
    """The estimate's run's description (MLflow's note; the report page's summary)."""
    done = len(result["folds"])
    lines = [f"## Nested estimate `{spec.name}`", "",
             f"Objective: {result['direction']} {result['metric']} in each outer fold's study; the selected "
             f"configuration scored by {result['outer_metric']} on the fold's held-out part  ",
             f"Outer folds: {done} of {result['outer_folds']} done, {spec.trials} trials each (sampler "
             f"{spec.sampler['name']}, pruner {spec.pruner['name']})", "",
             f"**Estimate: {result['outer_metric']} {shown(result['outer'])}** (mean ± std [95% t-interval] over "
             "outer folds)"]
    return "\n".join(lines)


def _parent_place(spec: StudySpec, folds: int, storage: str) -> Place:
    """The estimate's parent run: the newest one of this study and fold count goes on, else a new one."""
    same = [run for run in runs_tagged(spec.experiment, "kind", KIND)
            if run.tags.get("study") == spec.name and run.tags.get("outer_folds") == str(folds)]
    tags = {"kind": KIND, "study": spec.name, "outer_folds": str(folds), "budget_trials": str(spec.trials),
            "objective": f"{spec.metrics[0]}:{spec.directions[0]}", "storage": as_logged(storage)}
    return Place(spec.experiment, f"nested {spec.name} {folds} outer folds", tags=tags,
                 reopen=same[0].id if same else "")


def _fold_row(fold: int, outcome) -> dict:
    return {"fold": fold, "study": outcome.name, "run_id": outcome.parent_run_id, "selected_trial": outcome.best_trial,
            "params": dict(outcome.best_params), "inner_best": outcome.best_values[0] if outcome.best_values else None,
            "outer": outcome.best_test[1] if outcome.best_test else None}


def _result(spec: StudySpec, folds: int, rows: list[dict]) -> dict:
    return {"metric": spec.metrics[0], "outer_metric": test_metric(spec), "direction": spec.directions[0],
            "outer_folds": folds, "folds": rows,
            "outer": spread([row["outer"] for row in rows if row["outer"] is not None])}

