"""Optuna studies where every trial is an MLflow run.

One MLflow experiment per study, one parent run for the study, one child run
per trial (with k-fold, the trial's run has one child per fold). Trials keep
their model's weights; the best trial's run also gets the model in MLflow's
format when the study ends. The trial holds
its run id (user attribute `mlflow_run_id`) and the run holds the study name and
trial number (tags), so each finds the other.

Workers are processes that share the storage. Each one, holding the budget
lock, counts the finished and running trials and asks for a new trial only when
the budget is not reached, so N workers finish exactly the requested number.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from core.config import Config, read_yaml
from core.errors import ConfigError, UserError
from core.space import Param, parse_space, sample
from core.study_storage import DEFAULT_STORAGE, budget_lock, check_storage, is_rdb, open_storage

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("median", "successive_halving", "hyperband", "none")
# What a trial can be scored on: the validation metrics of fit(), or the model's size.
METRICS = {"val_acc": "final_val_acc", "val_loss": "final_val_loss", "train_acc": "final_train_acc",
           "parameters": "parameters", "seconds": "seconds"}
PER_EPOCH = {"val_acc", "val_loss", "train_acc"}  # metrics that can be reported to the pruner each epoch


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

    @property
    def multi_objective(self) -> bool:
        return len(self.metrics) > 1

    @property
    def folds(self) -> int:
        return self.base.split.k if self.base.split.kind != "holdout" else 1


# ---- the spec ------------------------------------------------------------------

def load_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = (), name: str | None = None,
              trials: int | None = None, timeout: float | None = None) -> StudySpec:
    """Read and check a study spec; every problem is one ConfigError before anything is created."""
    from core.config import parse_overrides

    document = read_yaml(path)
    unknown = set(document) - {"name", "config", "space", "objective", "sampler", "pruner", "budget", "seed"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} "
                          f"(expected name, config, space, objective, sampler, pruner, budget, seed)")
    base = Config().apply(document.get("config") or {}).apply(parse_overrides(overrides)).validate()
    objective = document.get("objective") or {"metric": "val_acc", "direction": "maximize"}
    metrics = objective.get("metrics") or [objective.get("metric", "val_acc")]
    directions = objective.get("directions") or [objective.get("direction", "maximize")]
    if len(metrics) != len(directions):
        raise ConfigError(f"{path}: objective has {len(metrics)} metrics but {len(directions)} directions")
    for metric in metrics:
        if metric not in METRICS:
            raise ConfigError(f"{path}: objective metric {metric!r} is not one of {', '.join(METRICS)}")
    for direction in directions:
        if direction not in ("maximize", "minimize"):
            raise ConfigError(f"{path}: direction {direction!r} must be maximize or minimize")
    budget = document.get("budget") or {}
    spec = StudySpec(
        name=name or str(document.get("name") or Path(path).stem),
        base=base, params=parse_space(document.get("space"), base),
        metrics=list(metrics), directions=list(directions),
        sampler=_section(path, document, "sampler", "tpe"), pruner=_section(path, document, "pruner", "median"),
        trials=int(trials if trials is not None else budget.get("trials", 30)),
        timeout=timeout if timeout is not None else budget.get("timeout"),
        seed=int(document.get("seed", base.seed)), path=str(path))
    if spec.trials < 1:
        raise ConfigError(f"--trials={spec.trials}: must be at least 1")
    if spec.timeout is not None and spec.timeout <= 0:
        raise ConfigError(f"--timeout={spec.timeout}: must be more than 0 seconds")
    if not spec.name.strip() or len(spec.name) > 200:
        raise ConfigError(f"study name {spec.name!r}: give a non-empty name of at most 200 characters")
    if spec.sampler["name"] not in SAMPLERS:
        raise ConfigError(f"{path}: sampler {spec.sampler['name']!r} is not one of {', '.join(SAMPLERS)}")
    if spec.pruner["name"] not in PRUNERS:
        raise ConfigError(f"{path}: pruner {spec.pruner['name']!r} is not one of {', '.join(PRUNERS)}")
    if spec.multi_objective and spec.pruner["name"] != "none":
        spec.pruner = {"name": "none"}  # Optuna cannot prune multi-objective trials
    make_sampler(spec, 0)
    make_pruner(spec)
    return spec


def _section(path, document: dict, key: str, default: str) -> dict[str, Any]:
    value = document.get(key) or {"name": default}
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{path}: `{key}:` needs a name, e.g. {key}: {{name: {default}}}")
    return dict(value)


def make_sampler(spec: StudySpec, worker: int):
    import optuna

    options = {k: v for k, v in spec.sampler.items() if k != "name"}
    # Workers explore differently; trial seeds stay derived from trial numbers.
    seed = int(options.pop("seed", spec.seed)) * 1000 + worker
    classes = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler,
               "cmaes": optuna.samplers.CmaEsSampler, "gp": optuna.samplers.GPSampler}
    try:
        return classes[spec.sampler["name"]](seed=seed, **options)
    except TypeError as error:
        raise ConfigError(f"sampler {spec.sampler['name']}: {error}") from None


def make_pruner(spec: StudySpec):
    import optuna

    options = {k: v for k, v in spec.pruner.items() if k != "name"}
    classes = {"median": optuna.pruners.MedianPruner, "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
               "hyperband": optuna.pruners.HyperbandPruner, "none": optuna.pruners.NopPruner}
    try:
        return classes[spec.pruner["name"]](**options)
    except TypeError as error:
        raise ConfigError(f"pruner {spec.pruner['name']}: {error}") from None


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's seed, from the study seed and trial number alone (not the worker)."""
    return (study_seed * 1_000_003 + number * 7919 + 17) % (2**31 - 1)


# ---- running -------------------------------------------------------------------

@dataclass
class StudyOutcome:
    name: str
    storage: str
    parent_run_id: str
    finished: int
    pruned: int
    failed: int
    best_values: list[float] | None
    best_params: dict[str, Any]
    best_run_id: str
    best_trial: int | None
    epochs_used: int
    interrupted: bool = False


def run_study(spec: StudySpec, storage: str = DEFAULT_STORAGE, workers: int = 1, progress: bool = False) -> StudyOutcome:
    """Run `spec` until `spec.trials` trials are finished (complete or pruned) in the study."""
    import optuna

    from core.study_report import StudyReporter
    from core.tracking import mlflow_store
    from core.train import prepare

    if workers < 1:
        raise UserError(f"--workers={workers}: must be at least 1")
    prepare(spec.base)  # the base config's data and model load, before anything is written
    check_storage(storage)
    mlflow_store.client()  # MLflow's schema is created once, here, before any worker starts
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=open_storage(storage), load_if_exists=True,
                                directions=spec.directions, sampler=make_sampler(spec, 0), pruner=make_pruner(spec))
    _check_same_objective(study, spec)
    experiment_id = mlflow_store.experiment_id(spec.name)
    sweep_dead_trials(study, storage)
    mlflow_store.fail_stale_runs([experiment_id])

    reporter = StudyReporter(spec, study, storage)
    parent_run_id = reporter.open_parent_run()
    interrupted = False
    try:
        if workers == 1:
            work(spec, storage, parent_run_id, worker=0, progress=progress)
        else:
            interrupted = _run_workers(spec, storage, parent_run_id, workers)
    except BaseException as error:
        interrupt = interrupt_behind(error)
        reporter.close_parent_run("FAILED" if interrupt is None else "KILLED")
        if interrupt is None or interrupt is error:
            raise
        # Clean-up after Ctrl-C or SIGTERM failed too (a store call cut short): still a stop, not a crash.
        log.warning("while stopping: %s: %s", type(error).__name__, error)
        raise interrupt from None
    outcome = reporter.final_report()
    reporter.close_parent_run("FAILED" if interrupted else "FINISHED")
    outcome.interrupted = interrupted
    return outcome


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that `error` is, or was raised while handling; None for a plain error."""
    while error is not None:  # Python keeps __context__ chains free of cycles
        if isinstance(error, KeyboardInterrupt):
            return error
        error = error.__context__
    return None


def _check_same_objective(study, spec: StudySpec) -> None:
    directions = [d.name.lower() for d in study.directions]
    if directions != spec.directions:
        raise UserError(f"study {spec.name!r} exists with directions {directions}, not {spec.directions}; "
                        f"use another --name")


def _run_workers(spec: StudySpec, storage: str, parent_run_id: str, workers: int) -> bool:
    """N worker processes; True when one of them died (killed, crashed)."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // workers)  # no oversubscription of the cores
    processes = [context.Process(target=_worker_entry, args=(spec, storage, parent_run_id, index, threads),
                                 name=f"study-worker-{index}") for index in range(workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker ends its run KILLED
        for process in processes:
            process.join(30)
        raise
    failed = [p for p in processes if p.exitcode != 0]
    for process in failed:
        log.warning("%s exited with code %s", process.name, process.exitcode)
    return bool(failed)


def _worker_entry(spec: StudySpec, storage: str, parent_run_id: str, worker: int, threads: int) -> None:
    import torch

    from core.tracking import mlflow_store

    logging.basicConfig(level=logging.WARNING, format=f"worker {worker} %(levelname)s %(name)s: %(message)s")
    mlflow_store.install_signal_handlers()
    torch.set_num_threads(threads)
    try:
        work(spec, storage, parent_run_id, worker)
    except BaseException as error:
        interrupt = interrupt_behind(error)
        if interrupt is None:
            raise
        raise SystemExit(128 + getattr(interrupt, "signum", signal.SIGINT)) from None


@contextlib.contextmanager
def objects_so_far_frozen() -> Iterator[None]:
    """Leave what exists now (imports, the data set) out of the garbage collector's full passes while inside.

    Those passes walk every object and took ~0.4 s each, stalling a trial every few hundred.
    """
    gc.collect()  # the garbage made so far first, so that none of it is kept
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()  # as a library call, the caller's objects are collected as usual afterwards


def work(spec: StudySpec, storage: str, parent_run_id: str, worker: int, progress: bool = False) -> int:
    """One worker's loop: take a trial while the budget allows, run it, report it. Returns trials run."""
    import optuna
    from tqdm.auto import tqdm

    from core.study_report import StudyReporter
    from core.train import warm_up

    study = optuna.load_study(study_name=spec.name, storage=open_storage(storage),
                              sampler=make_sampler(spec, worker), pruner=make_pruner(spec))
    reporter = StudyReporter(spec, study, storage, parent_run_id)
    warm_up(spec.base)
    started = time.monotonic()
    ran = 0
    bar = tqdm(total=spec.trials, initial=count_trials(study)[0], desc=f"study {spec.name}", unit="trial",
               disable=not progress)
    with objects_so_far_frozen(), bar:
        while spec.timeout is None or time.monotonic() - started < spec.timeout:
            with budget_lock(storage, spec.name):
                finished, running = count_trials(study)
                if finished + running >= spec.trials:
                    break
                trial = study.ask()
                trial.set_user_attr("host", socket.gethostname())
                trial.set_user_attr("pid", os.getpid())
            finished_trial = run_trial(spec, study, trial, parent_run_id)
            ran += 1
            reporter.after_trial(finished_trial)
            bar.n = count_trials(study)[0]
            bar.refresh()
    return ran


def count_trials(study) -> tuple[int, int]:
    """(finished: complete or pruned, running) trials of the study."""
    import optuna

    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.RUNNING))
    running = sum(1 for t in trials if t.state == states.RUNNING)
    return len(trials) - running, running


def sweep_dead_trials(study, storage: str) -> list[int]:
    """Fail the trials left RUNNING by dead workers of this host and queue their parameters again.

    RDB storages also fail trials whose heartbeat stopped (workers on other machines).
    """
    import optuna

    from core.tracking.mlflow_store import process_alive

    if is_rdb(storage):
        optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    swept = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        if attrs.get("host") != host or process_alive(int(attrs.get("pid", 0) or 0)):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "fail_reason", f"worker {attrs.get('pid')} died")
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        swept.append(trial.number)
    if swept:
        log.warning("trials %s were left RUNNING by dead workers: marked FAIL, parameters queued again", swept)
    return swept


def run_trial(spec: StudySpec, study, trial, parent_run_id: str):
    """Sample a config, train (each fold), and tell Optuna; returns the finished (frozen) trial.

    Never raises for a bad trial; only Ctrl-C or SIGTERM gets through.
    """
    import optuna
    import torch

    from core.tracking import mlflow_store

    config = sample(spec.params, trial, spec.base)
    config.seed = trial_seed(spec.seed, trial.number)
    trial.set_user_attr("seed", config.seed)
    name = trial_run_name(trial.number, trial.params)
    tags = {"study": spec.name, "trial_number": str(trial.number), "seed": str(config.seed)}
    run_ids: list[str] = []

    def on_run_start(run_id: str) -> None:
        run_ids.append(run_id)
        trial.set_user_attr("mlflow_run_id", run_id)

    state = "complete"
    try:
        runner = _run_folds if spec.folds > 1 else _run_holdout
        values, epochs = runner(spec, trial, config, name, tags, parent_run_id, on_run_start)
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
    except Exception as error:  # one bad trial (bad values, out of memory) must not end the study
        state = "failed"
        trial.set_user_attr("fail_reason", f"{type(error).__name__}: {error}"[:1000])
        if not run_ids:  # it failed before its run began (e.g. a model too deep for the data): record it
            on_run_start(_record_failed_run(spec.name, name, tags, parent_run_id, config, error))
        # Text only: a log record holding the error would keep the trial's tensors alive.
        log.warning("trial %d failed: %s", trial.number, f"{type(error).__name__}: {error}")
        return study.tell(trial, state=optuna.trial.TrialState.FAIL)
    finally:
        if run_ids:
            mlflow_store.client().set_tag(run_ids[0], "state", state)
        if state == "failed":
            gc.collect()  # an error's traceback holds the trial's tensors in reference cycles
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next trial gets the memory back


def _record_failed_run(experiment: str, name: str, tags: dict[str, str], parent_run_id: str, config: Config,
                       error: Exception) -> str:
    from core.tracking import mlflow_store
    from core.tracking.mlflow_sink import MLflowTracker

    run_id = mlflow_store.start_run(experiment, name, {**tags, "error": f"{type(error).__name__}: {error}"[:5000]},
                                    parent_run_id)
    tracker = MLflowTracker(run_id, experiment)
    tracker.log_params(config.to_flat())
    tracker.close()
    mlflow_store.end_run(run_id, "FAILED")
    return run_id


def _run_holdout(spec: StudySpec, trial, config: Config, name: str, tags: dict[str, str],
                 parent_run_id: str, on_run_start) -> tuple[list[float], int]:
    import optuna

    from core.tracked import tracked_fit

    def should_stop(epoch: int, metrics: dict[str, float]) -> bool:
        if spec.multi_objective or spec.metrics[0] not in PER_EPOCH:
            return False
        trial.report(metrics[spec.metrics[0]], epoch)
        return trial.should_prune()

    tracked = tracked_fit(config, experiment=spec.name, run_name=name, parent_run_id=parent_run_id, tags=tags,
                          should_stop=should_stop, visdom_env=spec.name, visdom_label=name,
                          on_run_start=on_run_start, mlflow_model=False)
    result = tracked.result
    if result.stop_reason == "non_finite":
        raise optuna.TrialPruned(f"non-finite loss: {result.detail}")
    if result.stop_reason == "pruned":
        raise optuna.TrialPruned(f"pruned by the {spec.pruner['name']} pruner after epoch {result.epochs_run - 1}")
    return [_value(metric, result) for metric in spec.metrics], result.epochs_run


def _run_folds(spec: StudySpec, trial, config: Config, name: str, tags: dict[str, str],
               parent_run_id: str, on_run_start) -> tuple[list[float], int]:
    """K-fold: the trial's value is the mean over folds, reported to the pruner after each fold."""
    import optuna

    from core.tracked import tracked_fit
    from core.tracking import mlflow_store
    from core.tracking.mlflow_sink import MLflowTracker

    with mlflow_store.open_run(spec.name, name, tags, parent_run_id) as trial_run_id:
        on_run_start(trial_run_id)
        summary = MLflowTracker(trial_run_id, spec.name)
        summary.log_params(config.to_flat())
        per_fold: list[list[float]] = []
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
                summary.close()
                raise optuna.TrialPruned(f"non-finite loss in fold {fold}: {result.detail}")
            per_fold.append([_value(metric, result) for metric in spec.metrics])
            mean = [sum(values) / len(values) for values in zip(*per_fold)]
            summary.log_metrics({f"cv_{metric}": value for metric, value in zip(spec.metrics, mean)}, step=fold)
            if not spec.multi_objective:
                trial.report(mean[0], fold)
                if trial.should_prune():
                    summary.close()
                    raise optuna.TrialPruned(f"pruned by the {spec.pruner['name']} pruner after fold {fold}")
        summary.close()
        return mean, epochs


def _value(metric: str, result) -> float:
    if metric == "parameters":
        value = result.extra["parameters"]
    elif metric == "seconds":
        value = result.seconds
    else:
        value = result.metrics.get(METRICS[metric])
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
