"""One trial: sample a config from the space, train it (each fold) as MLflow runs, and tell Optuna.

The trial holds its run id (user attribute `mlflow_run_id`) and the run holds
the study name and trial number (tags), so each finds the other. A bad trial
(bad values, out of memory, a model too deep for the data) fails alone and
the study goes on; only Ctrl-C, SIGTERM or an outage (a server that stayed down, a full disk) gets through.
"""

from __future__ import annotations

import gc
import logging
import math
from typing import Any

import optuna
import torch

from core import outages
from core import resume as resuming
from core.config import Config, fold_config
from core.device import checkpoint_device, device_type
from core.errors import OutageError, UserError
from core.resume import Resume
from core.runs import FitHooks, Place, Run, fit_folds, fit_in, open_run
from core.runs.folds import FoldPlan, fold_plan
from core.runs.record import run_params
from core.signals import stop_name
from core.study.outcome import State, TrialOutcome
from core.study.space import sample
from core.study.spec import StudySpec, per_epoch_metrics, result_key, trial_seed
from core.train import FitResult, prepare

log = logging.getLogger(__name__)

HOOKS = FitHooks(served_model=False)  # a study logs its best trial's model itself, at the end


def run_trial(spec: StudySpec, study: optuna.Study, trial: optuna.Trial,
              parent_run_id: str) -> optuna.trial.FrozenTrial:
    """Sample a config, train it (each fold) in the trial's run, and tell Optuna how it ended, once."""
    config, resume = trial_config(spec, trial)
    place = trial_place(spec, trial, config, parent_run_id)
    try:
        with open_run(place.with_tags(resume.tags()) if resume else place) as run:
            trial.set_user_attr("mlflow_run_id", run.id)
            outcome = _train_folds(spec, trial, config, run) if spec.folds > 1 else \
                _train_holdout(spec, trial, config, run, resume)
            run.conclude(outcome.tag, outcome.run_status)  # the state tag, written before the run ends
    except KeyboardInterrupt as stop:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        # the same command resumes the study: this trial first, from its checkpoint when it has one
        _queue_retry(study, trial, f"stopped by {stop_name(stop)}", resume=True)
        raise
    except Exception as error:  # one bad trial must not end the study; an outage (a server, a full disk) does
        _stop_on_outage(study, trial, error)
        outcome = TrialOutcome.failed(f"{type(error).__name__}: {error}")  # text only: the error holds tensors
        del error
        gc.collect()  # an error's traceback holds the trial's tensors in reference cycles
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next trial gets the memory back
    _name_the_state(spec, trial, place, outcome)
    return outcome.tell(study, trial)


def _name_the_state(spec: StudySpec, trial: optuna.Trial, place: Place, outcome: TrialOutcome) -> None:
    run_id = trial.user_attrs.get("mlflow_run_id")
    renamed = finished_run_name(place.name, outcome)
    if run_id and renamed != place.name:
        Run.of(run_id, spec.experiment).rename(renamed)


def trial_config(spec: StudySpec, trial: optuna.Trial) -> tuple[Config, Resume | None]:
    """The trial's config (its seed derived from its number), and the checkpoint it goes on from, if any."""
    config = sample(spec.params, trial, spec.base)
    config.seed = trial_seed(spec.seed, trial.number)
    resume = resume_of(trial, config)
    if resume is not None:
        config.seed = resume.config.seed  # the dead trial's seed: its random streams go on
    trial.set_user_attr("seed", config.seed)
    return config, resume


def trial_place(spec: StudySpec, trial: optuna.Trial, config: Config, parent_run_id: str) -> Place:
    tags = {"study": spec.name, "trial_number": str(trial.number), "seed": str(config.seed)}
    if trial.user_attrs.get("warm_start_from"):  # queued from another study, a run, or --enqueue
        tags["warm_start_from"] = trial.user_attrs["warm_start_from"]
    return Place(spec.experiment, trial_run_name(trial.number, trial.params), parent_run_id, tags, live_env=spec.name)


def _stop_on_outage(study: optuna.Study, trial: optuna.Trial, error: Exception) -> None:
    """Raise the outage behind `error`, if any. The trial's run is FAILED already, or cannot be written (the next
    start closes it). With the tracking server gone Optuna still answers: the trial is FAIL and queued again;
    else it stays RUNNING in Optuna, and the next start fails and retries it."""
    stopped = outages.outage_behind(error)
    if stopped is None:
        return
    if outages.tracking_server_gave_up(stopped):
        _tell_cut_off(study, trial, stopped)
    outages.raise_outage_behind(error)


def _tell_cut_off(study: optuna.Study, trial: optuna.Trial, error: OutageError) -> None:
    """FAIL (its values may be missing from its run), and its parameters queued again for the next start."""
    trial.set_user_attr("fail_reason", f"OutageError: {error}"[:1000])
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    _queue_retry(study, trial, "tracking outage")


def _queue_retry(study: optuna.Study, trial: optuna.Trial, reason: str, resume: bool = False) -> None:
    """The trial's parameters queued again, the retry naming it (`retry_of`) and, with `resume`, its run, whose
    checkpoint it goes on from (resume_of)."""
    if not trial.params:
        return
    retry = {"retry_of": trial.number, "retry_reason": reason}
    if resume and trial.user_attrs.get("mlflow_run_id"):
        retry["resume_run_id"] = trial.user_attrs["mlflow_run_id"]
    study.enqueue_trial(trial.params, user_attrs=retry, skip_if_exists=False)


def _prepared(config: Config, run: Run):
    """The trial's data and model; when they cannot be built (e.g. a model too deep for the data) its run still
    shows the params it was given before it ends FAILED."""
    try:
        return prepare(config)
    except Exception:
        with run.recorder() as record:
            record.log_params(run_params(config, run.place))
        raise


def _train_holdout(spec: StudySpec, trial: optuna.Trial, config: Config, run: Run,
                   resume: Resume | None) -> TrialOutcome:
    pruning = Pruning(spec, trial, resume)
    prepared = _prepared(config, run)
    trial.set_user_attr("val_samples", len(prepared.val_idx))  # the summary says what one sample is worth
    result = fit_in(run, prepared, FitHooks(should_stop=pruning, served_model=False), resume)
    if result.stop.reason == "non_finite":
        return TrialOutcome.failed(f"non-finite loss: {result.stop.detail}", result.epochs_run)
    if result.stop.reason == "pruned":
        return TrialOutcome.pruned(result.stop.detail, result.epochs_run)
    return TrialOutcome.complete([_value(metric, result) for metric in spec.metrics], result.epochs_run)


class Pruning:
    """The pruner, asked after each epoch of a holdout trial: the epoch's objective value is reported, and the
    answer is why to stop ("" to go on). A resumed trial reports the epochs its dead run trained first."""

    def __init__(self, spec: StudySpec, trial: optuna.Trial, resume: Resume | None):
        self.spec, self.trial = spec, trial
        self.reports = not spec.multi_objective and spec.metrics[0] in per_epoch_metrics(spec.base)
        if resume is not None and self.reports:  # the pruner sees them as if the trial had never stopped
            for epoch, metrics in enumerate(resume.state["history"]):
                trial.report(metrics[spec.metrics[0]], epoch)

    def __call__(self, epoch: int, metrics: dict[str, float]) -> str:
        if not self.reports or self.spec.metrics[0] not in metrics:  # train_<metric> under the user's own step
            return ""
        self.trial.report(metrics[self.spec.metrics[0]], epoch)
        if self.trial.should_prune():
            return f"pruned by the {self.spec.pruner['name']} pruner after epoch {epoch}"
        return ""


def _train_folds(spec: StudySpec, trial: optuna.Trial, config: Config, run: Run) -> TrialOutcome:
    """K-fold: the trial's run is the group, a child run per fold; its value is the mean over folds."""
    with run.recorder() as summary:
        summary.log_params(run_params(config, run.place))
    plans = [fold_plan(run, run.place.name, fold_config(config, fold), run.place.tags, {"fold": fold})
             for fold in range(spec.folds)]
    judge = FoldJudge(spec, trial, run)
    fit_folds(plans, HOOKS, judge)
    return judge.outcome()


class FoldJudge:
    """After each fold of a K-fold trial: the running mean on the trial's run (cv_<metric>), reported to the
    pruner (each fold's own value for the wilcoxon pruner, step = fold); a diverged fold fails the trial."""

    def __init__(self, spec: StudySpec, trial: optuna.Trial, run: Run):
        self.spec, self.trial, self.run = spec, trial, run
        self.per_fold: list[list[float]] = []
        self.epochs = 0
        self.stopped: TrialOutcome | None = None

    def __call__(self, plan: FoldPlan, tracked) -> bool:
        result, fold = tracked.result, plan.config.split.fold
        self.epochs += result.epochs_run
        if result.stop.reason == "non_finite":
            self.stopped = TrialOutcome.failed(f"non-finite loss in fold {fold}: {result.stop.detail}", self.epochs)
            return False
        self.per_fold.append([_value(metric, result) for metric in self.spec.metrics])
        mean = self.mean()
        self.run.log_values({f"cv_{metric}": value for metric, value in zip(self.spec.metrics, mean)}, step=fold)
        if self.spec.multi_objective:
            return True
        self.trial.report(self.per_fold[-1][0] if self.spec.pruner["name"] == "wilcoxon" else mean[0], fold)
        if self.trial.should_prune():
            self.stopped = TrialOutcome.pruned(f"pruned by the {self.spec.pruner['name']} pruner after fold {fold}",
                                               self.epochs)
            return False
        return True

    def mean(self) -> list[float]:
        return [sum(values) / len(values) for values in zip(*self.per_fold)]

    def outcome(self) -> TrialOutcome:
        return self.stopped or TrialOutcome.complete(self.mean(), self.epochs)


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
    made_on, trains_on = checkpoint_device(resume.state["rng"]), device_type(config.device)
    if made_on != trains_on:  # random streams do not carry across device types (device.set_rng_states)
        log.warning("trial %d starts over: run %s trained on %s, this worker on %s", trial.number, run_id,
                    made_on, trains_on)
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


GENERIC_WORDS = {"none", "off", "on", "auto", "true", "false", "yes", "no"}  # say nothing without their key


def trial_run_name(number: int, params: dict[str, Any]) -> str:
    """e.g. `trial-007 small_cnn adam augment=none lr=3.1e-3`: a choice by its value alone (model.name and
    optim.name would both read `name=`) unless the value is a word like none, a number by the shortest end of its
    key no other key shares."""
    parts = [f"trial-{number:03d}"]
    for key, value in params.items():
        if isinstance(value, str) and value.lower() not in GENERIC_WORDS:
            parts.append(value)
        else:
            parts.append(f"{_short_key(key, params)}={_short_value(value)}")
    return " ".join(parts)[:250]


def _short_key(key: str, params: dict[str, Any]) -> str:
    words = key.split(".")
    for size in range(1, len(words) + 1):
        end = ".".join(words[-size:])
        if not any(other != key and (other.endswith("." + end) or other == end) for other in params):
            return end
    return key


def _short_value(value: Any) -> str:
    """0.0031416 -> 3.1e-3, 0.25 -> 0.25, 256 -> 256, [256, 128] -> [256,128]."""
    if isinstance(value, float) and value != 0 and not 0.01 <= abs(value) < 1000:
        mantissa, exponent = f"{value:.1e}".split("e")
        return f"{mantissa.removesuffix('.0')}e{int(exponent)}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value).replace(" ", "")


def finished_run_name(name: str, outcome: TrialOutcome) -> str:
    """A pruned or failed trial's run says so after its number (`trial-008 pruned@3 small_cnn ...`): the runs
    table shows names, and the `state` tag only as a column added by hand. A complete trial's name is unchanged."""
    state = {State.PRUNED: f"pruned@{outcome.epochs}", State.FAIL: "failed"}.get(outcome.state)
    if state is None:
        return name
    number, _, rest = name.partition(" ")
    return f"{number} {state} {rest}".strip()[:250]
