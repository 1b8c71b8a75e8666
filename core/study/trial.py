"""One trial: sample a config from the space, train it (each fold) as MLflow runs, and tell Optuna.

The trial holds its run id (user attribute `mlflow_run_id`) and the run holds
the study name and trial number (tags), so each finds the other. A bad trial
(bad values, out of memory, a model too deep for the data) fails alone and
the study goes on; only Ctrl-C or SIGTERM gets through.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
from collections.abc import Callable
from typing import Any

import optuna
import torch

from core import resume as resuming
from core.config import Config
from core.errors import OutageError, UserError
from core.resume import Resume
from core.study.space import sample
from core.study.spec import PER_EPOCH, StudySpec, result_key, trial_seed
from core.tracked import run_params, tracked_fit
from core.tracking import mlflow_store, outage
from core.tracking.mlflow_sink import MLflowTracker
from core.train import FitResult

log = logging.getLogger(__name__)

OnRunStart = Callable[[str], None]


def run_trial(spec: StudySpec, study: optuna.Study, trial: optuna.Trial,
              parent_run_id: str) -> optuna.trial.FrozenTrial:
    """Sample a config, train (each fold), and tell Optuna; returns the finished (frozen) trial."""
    config = sample(spec.params, trial, spec.base)
    config.seed = trial_seed(spec.seed, trial.number)
    resume = resume_of(trial, config)
    if resume is not None:
        config.seed = resume.config.seed  # the dead trial's seed: its random streams go on
    trial.set_user_attr("seed", config.seed)
    name = trial_run_name(trial.number, trial.params)
    tags = {"study": spec.name, "trial_number": str(trial.number), "seed": str(config.seed)}
    if trial.user_attrs.get("warm_start_from"):  # queued from another study, a run, or --enqueue
        tags["warm_start_from"] = trial.user_attrs["warm_start_from"]
    run_ids: list[str] = []

    def on_run_start(run_id: str) -> None:
        run_ids.append(run_id)
        trial.set_user_attr("mlflow_run_id", run_id)

    state = "complete"
    try:
        if spec.folds > 1:
            values, epochs = _run_folds(spec, trial, config, name, tags, parent_run_id, on_run_start)
        else:
            values, epochs = _run_holdout(spec, trial, config, name, tags, parent_run_id, on_run_start, resume)
        trial.set_user_attr("epochs", epochs)
        return study.tell(trial, values if spec.multi_objective else values[0])
    except optuna.TrialPruned as pruned:
        state = "pruned"
        trial.set_user_attr("prune_reason", str(pruned) or "pruner")
        return study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    except KeyboardInterrupt:
        state = "killed"
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    except Exception as error:  # one bad trial must not end the study; an outage (a server, a full disk) does
        stopped = mlflow_store.outage_behind(error)  # the OutageError behind it, if any
        if stopped is not None:
            state = "outage"  # its run is FAILED already, or cannot be written (the next start closes it)
            if outage.declared() is stopped:  # the tracking server's: Optuna's storage answers, the trial is retried
                _tell_cut_off(study, trial, stopped)
            mlflow_store.raise_outage_behind(error)  # else RUNNING in Optuna: the next start fails and retries it
        state = "failed"
        if not run_ids:  # it failed before its run began (e.g. a model too deep for the data): record it
            on_run_start(_record_failed_run(spec.name, name, tags, parent_run_id, config, error))
        return _tell_failed(study, trial, error)
    finally:
        _after_trial(run_ids, state)


def _tell_failed(study: optuna.Study, trial: optuna.Trial, error: Exception) -> optuna.trial.FrozenTrial:
    reason = f"{type(error).__name__}: {error}"
    trial.set_user_attr("fail_reason", reason[:1000])
    log.warning("trial %d failed: %s", trial.number, reason)  # text only: the error holds the trial's tensors
    return study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _tell_cut_off(study: optuna.Study, trial: optuna.Trial, error: OutageError) -> None:
    """FAIL (its values may be missing from its run), and its parameters queued again for the next start."""
    trial.set_user_attr("fail_reason", f"OutageError: {error}"[:1000])
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    if trial.params:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retry_reason": "tracking outage"},
                            skip_if_exists=False)


def _after_trial(run_ids: list[str], state: str) -> None:
    if run_ids and state != "outage":  # in an outage the run is already closed FAILED, or cannot be written
        mlflow_store.client().set_tag(run_ids[0], "state", state)
    if state == "failed":
        gc.collect()  # an error's traceback holds the trial's tensors in reference cycles
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next trial gets the memory back


def _record_failed_run(experiment: str, name: str, tags: dict[str, str], parent_run_id: str, config: Config,
                       error: Exception) -> str:
    run_id = mlflow_store.start_run(experiment, name, {**tags, "error": f"{type(error).__name__}: {error}"[:5000]},
                                    parent_run_id)
    with contextlib.closing(MLflowTracker(run_id, experiment)) as record:
        record.log_params(run_params(config, tags))
    mlflow_store.end_run(run_id, "FAILED")
    return run_id


def _run_holdout(spec: StudySpec, trial: optuna.Trial, config: Config, name: str, tags: dict[str, str],
                 parent_run_id: str, on_run_start: OnRunStart, resume: Resume | None) -> tuple[list[float], int]:
    reports = not spec.multi_objective and spec.metrics[0] in PER_EPOCH
    if resume is not None and reports:  # the pruner sees the epochs the dead trial trained, as if never stopped
        for epoch, metrics in enumerate(resume.state["history"]):
            trial.report(metrics[spec.metrics[0]], epoch)

    def should_stop(epoch: int, metrics: dict[str, float]) -> bool:
        if not reports:
            return False
        trial.report(metrics[spec.metrics[0]], epoch)
        return trial.should_prune()

    tracked = tracked_fit(config, experiment=spec.name, run_name=name, parent_run_id=parent_run_id, tags=tags,
                          should_stop=should_stop, visdom_env=spec.name, visdom_label=name,
                          on_run_start=on_run_start, mlflow_model=False, resume=resume)
    result = tracked.result
    if result.stop_reason == "non_finite":
        raise optuna.TrialPruned(f"non-finite loss: {result.detail}")
    if result.stop_reason == "pruned":
        raise optuna.TrialPruned(f"pruned by the {spec.pruner['name']} pruner after epoch {result.epochs_run - 1}")
    return [_value(metric, result) for metric in spec.metrics], result.epochs_run


def _run_folds(spec: StudySpec, trial: optuna.Trial, config: Config, name: str, tags: dict[str, str],
               parent_run_id: str, on_run_start: OnRunStart) -> tuple[list[float], int]:
    """K-fold: the trial's value is the mean over folds, reported to the pruner after each fold (the running mean,
    or each fold's own value for the wilcoxon pruner, step = fold).

    A pruned trial's run (and its fold runs) end FINISHED, tagged state=pruned like holdout trials:
    the pruning is raised only once the trial's run is closed.
    """
    with mlflow_store.open_run(spec.name, name, tags, parent_run_id) as trial_run_id, \
            contextlib.closing(MLflowTracker(trial_run_id, spec.name)) as summary:
        on_run_start(trial_run_id)
        summary.log_params(run_params(config, tags))
        mean, epochs, pruned = _folds(spec, trial, config, name, tags, trial_run_id, summary)
    if pruned:
        raise optuna.TrialPruned(pruned)
    return mean, epochs


def _folds(spec: StudySpec, trial: optuna.Trial, config: Config, name: str, tags: dict[str, str],
           trial_run_id: str, summary: MLflowTracker) -> tuple[list[float], int, str]:
    """(mean values over the folds run, epochs, why the trial was pruned or "")."""
    per_fold: list[list[float]] = []
    mean: list[float] = []
    epochs = 0
    for fold in range(spec.folds):
        fold_config = config.copy()
        fold_config.split.fold = fold
        tracked = tracked_fit(fold_config, experiment=spec.name, run_name=f"{name} fold-{fold}",
                              parent_run_id=trial_run_id, tags={**tags, "fold": str(fold)},
                              visdom_env=spec.name, visdom_label=f"{name} fold {fold}", mlflow_model=False)
        result = tracked.result
        epochs += result.epochs_run
        if result.stop_reason == "non_finite":
            return mean, epochs, f"non-finite loss in fold {fold}: {result.detail}"
        per_fold.append([_value(metric, result) for metric in spec.metrics])
        mean = [sum(values) / len(values) for values in zip(*per_fold)]
        summary.log_metrics({f"cv_{metric}": value for metric, value in zip(spec.metrics, mean)}, step=fold)
        if not spec.multi_objective:
            # Wilcoxon pairs each fold's own value with the best trial's on the same fold; the others see the mean.
            trial.report(per_fold[-1][0] if spec.pruner["name"] == "wilcoxon" else mean[0], fold)
            if trial.should_prune():
                return mean, epochs, f"pruned by the {spec.pruner['name']} pruner after fold {fold}"
    return mean, epochs, ""


def resume_of(trial: optuna.Trial, config: Config) -> Resume | None:
    """The checkpoint of the dead trial this one retries (runner.sweep_dead_trials), when there is one and it
    trained this config; else None and the trial starts over (K-fold trials always do: no checkpoint per trial)."""
    run_id = trial.user_attrs.get("resume_run_id")
    if not run_id:
        return None
    try:
        resume = resuming.load(run_id)
        same = resume is not None and {**resume.config.to_flat(), "seed": config.seed} == config.to_flat()
    except UserError as error:  # e.g. a checkpoint of an older version, whose config no longer rebuilds
        log.warning("trial %d starts over: %s", trial.number, error)
        return None
    if resume is None:
        return None
    if not same:
        log.warning("trial %d starts over: run %s trained another config", trial.number, run_id)
        return None
    trial.set_user_attr("resumed_from", run_id)
    trial.set_user_attr("resumed_at_epoch", resume.first_epoch)
    return resume


def _value(metric: str, result: FitResult) -> float:
    if metric == "parameters":
        value = result.extra["parameters"]
    elif metric == "seconds":
        value = result.seconds
    else:
        value = result.metrics.get(result_key(metric))
    if value is None or not math.isfinite(value):
        raise RuntimeError(f"metric {metric} is missing or not finite ({value})")
    return float(value)


def trial_run_name(number: int, params: dict[str, Any]) -> str:
    """e.g. `trial-007 lr=3.1e-03 hidden=256 optim=adam`."""
    parts = [f"trial-{number:03d}"]
    for key, value in params.items():
        short = key.split(".")[-1]
        parts.append(f"{short}={value:.2g}" if isinstance(value, float) else f"{short}={value}")
    return " ".join(parts)[:250]
