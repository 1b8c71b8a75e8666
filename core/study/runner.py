"""Running a study: one process or N workers on a shared storage, until the budget is finished.

Workers are processes that share the storage. Each one, holding the budget
lock, counts the finished and running trials and asks for a new trial only when
the budget is not reached, so N workers finish exactly the requested number.
Trials left RUNNING by dead workers of this host are failed, and their
parameters queued again, before a study (re)starts. On an RDB storage each
running trial's heartbeat is recorded (study.heartbeat), and trials whose
heartbeat stopped (a worker on another machine died) are failed and retried
when a study starts and whenever a worker asks for a trial.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import multiprocessing
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import optuna
import torch
from tqdm.auto import tqdm

from core import backoff, outages
from core.data import drop_cached_data
from core.device import device_type, worker_gpus
from core.errors import OutageError, UserError
from core.models import check_deterministic
from core.page import existing_page
from core.runs.run import open_run, open_store, sweep_stale_runs
from core.signals import (
    end_with_parent,
    exit_code,
    install_signal_handlers,
    interrupt_behind,
    process_alive,
    stop_if_warned,
)
from core.study import default_storage
from core.study.final import ARTIFACT as FINAL_ARTIFACT
from core.study.final import plan_tag, run_final
from core.study.heartbeat import beating
from core.study.report import StudyOutcome, StudyReporter
from core.study.spec import StudySpec, make_pruner, make_sampler
from core.study.stopping import stopped_by
from core.study.storage import budget_lock, check_storage, experimental_heartbeat, is_rdb, open_storage
from core.study.trial import run_trial
from core.study.warm import WarmStart, enqueue
from core.threads import available_cores, set_workers
from core.train import prepare, select_device, warm_up

log = logging.getLogger(__name__)

FAILURES_IN_A_ROW = 10  # a study stops when its last this-many trials all failed
OUTAGE_EXIT = 3  # a worker's exit code when a server stayed down (as the CLI's for OutageError)

def run_study(spec: StudySpec, storage: str | None = None, workers: int = 1,
              progress: bool = False, gpus: list[str] | None = None,
              warm_starts: list[WarmStart] | None = None) -> StudyOutcome:
    """Run `spec` until `spec.trials` trials are finished (complete or pruned) in the study.

    With several workers and several GPUs (`gpus`, default: every visible one), each worker gets its own.
    `warm_starts` (study.warm.plan) are queued first, those the study does not hold yet.
    A full disk is one OutageError naming where, with the open runs closed. `storage`: by default the journal
    file in the nearest mlruns/ (core.store_dir).
    """
    try:
        return _run_study(spec, storage or default_storage(), workers, progress, gpus, warm_starts)
    except Exception as error:
        outages.raise_outage_behind(error)
        raise

def _run_study(spec: StudySpec, storage: str, workers: int, progress: bool, gpus: list[str] | None,
               warm_starts: list[WarmStart] | None) -> StudyOutcome:
    if workers < 1:
        raise UserError(f"--workers={workers}: must be at least 1")
    gpus = worker_gpus(gpus)  # --gpus checked against the devices there are (one line), as CUDA_VISIBLE_DEVICES
    check_base(spec, workers)
    study = create_study(spec, storage)
    with budget_lock(storage, spec.name):  # no worker is between asking for a trial and naming its process
        sweep_dead_trials(study, storage)
    sweep_stale_runs()  # every experiment's, as at any command's start: 16 ms for 400 runs
    # e.g. `make run` again, or a study its target or patience rule stopped: say so rather than "resume" nothing
    done = count_trials(study)[0] >= spec.trials or stopped_by(spec, study) is not None
    if done and (outcome := _already_done(spec, study, storage)) is not None:
        return outcome
    _say_what_is_queued(study, spec, [] if done else (warm_starts or []))
    reporter = StudyReporter(spec, study, storage)
    try:
        with open_run(reporter.parent_place()) as parent:  # ends KILLED on a stop, FAILED on an error or outage
            parent_run_id = reporter.started(parent)
            if workers == 1:
                work(spec, storage, parent_run_id, worker=0, progress=progress)
                interrupted = False
            else:
                interrupted = _run_workers(spec, storage, parent_run_id, workers, gpus)
            if spec.final and not interrupted:  # search -> final phase -> report (study.final)
                reporter.final = run_final(spec, study, parent)
            outcome = reporter.final_report()  # plots and the best model take seconds: a stop here ends KILLED too
            outcome.report_page = reporter.write_page()  # last: it shows what the steps before logged
            outcome.interrupted = interrupted
            if interrupted:
                parent.conclude("", "FAILED")  # a worker died
    except BaseException as error:
        interrupt = interrupt_behind(error)
        if interrupt is None or interrupt is error:
            raise
        # Clean-up after Ctrl-C or SIGTERM failed too (a store call cut short): still a stop, not a crash.
        log.warning("while stopping: %s: %s", type(error).__name__, error)
        raise interrupt from None
    return outcome

def create_study(spec: StudySpec, storage: str) -> optuna.Study:
    """The study in its storage, made (or loaded) once, before any worker starts, its objectives checked and
    named; MLflow's schema and the study's experiment likewise."""
    check_storage(storage)
    open_store(spec.experiment)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=spec.name, storage=open_storage(storage), load_if_exists=True,
                                directions=spec.directions, sampler=make_sampler(spec, 0), pruner=make_pruner(spec))
    _check_same_objective(study, spec)
    name_objectives(study, spec)
    return study

def create_for_workers(spec: StudySpec, storage: str) -> str:
    """For workers started elsewhere (a cluster's job array): the study and its parent run made once, here, so
    that workers starting at the same moment find them (no race to make either); the parent run's id.
    Each worker reopens the parent run while it works; the last one to end leaves the final report."""
    check_storage(storage)
    with budget_lock(storage, spec.name):  # two creators at once (Kubernetes' workers): one makes, one finds
        study = create_study(spec, storage)
        reporter = StudyReporter(spec, study, storage)
        if not study.user_attrs.get("mlflow_parent_run_id"):
            with open_run(reporter.parent_place()) as parent:
                reporter.started(parent)
    return study.user_attrs["mlflow_parent_run_id"]

def _already_done(spec: StudySpec, study: optuna.Study, storage: str) -> StudyOutcome | None:
    """The outcome of a study that has its trials, its report and its final phase; None when its final report or
    final phase was cut short (a kill, a full disk): then they are made again, with no trial to run."""
    reporter = StudyReporter(spec, study, storage, study.user_attrs.get("mlflow_parent_run_id", ""))
    if reporter.report_unfinished() or final_missing(spec, reporter):
        return None
    outcome = reporter.outcome()
    outcome.final = final_logged(reporter)
    outcome.already_done = True
    outcome.report_page = existing_page(spec.name)
    return outcome

def final_missing(spec: StudySpec, reporter: StudyReporter) -> bool:
    """The spec asks for a final phase its finished study has not run (with this plan): a rerun runs it."""
    return bool(spec.final) and bool(reporter.parent_run_id) and \
        reporter.parent.tags().get("final_plan") != plan_tag(spec)

def final_logged(reporter: StudyReporter) -> dict | None:
    """The final phase's result on the parent run, when it has one."""
    text = reporter.parent.read_text(FINAL_ARTIFACT) if reporter.parent_run_id else None
    return json.loads(text) if text else None

def _say_what_is_queued(study: optuna.Study, spec: StudySpec, warm_starts: list[WarmStart]) -> None:
    """Log what a resumed study holds (the CLI shows INFO lines), then queue the warm starts it lacks."""
    note = resuming_note(study, spec.name)
    if note:
        log.info("%s", note)
    queued = enqueue(study, warm_starts) if warm_starts else 0
    if queued:
        log.info("queued %d warm-start configurations as the first trials", queued)

def resuming_note(study: optuna.Study, name: str) -> str:
    """What a resumed study holds ("resuming study X: 5 finished, trial 2 retried"); "" for a new study."""
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return ""
    finished = sum(t.state in (states.COMPLETE, states.PRUNED) for t in trials)
    retried = [str(t.user_attrs["retry_of"]) for t in trials
               if t.state == states.WAITING and "retry_of" in t.user_attrs]
    note = f"resuming study {name}: {finished} finished"
    if retried:
        note += f", trial{'s' if len(retried) > 1 else ''} {', '.join(retried)} retried"
    return note

def _check_same_objective(study: optuna.Study, spec: StudySpec) -> None:
    directions = [d.name.lower() for d in study.directions]
    if directions != spec.directions:
        raise UserError(f"study {spec.name!r} exists with directions {directions}, not {spec.directions}; "
                        f"use another --name")

def name_objectives(study: optuna.Study, spec: StudySpec) -> None:
    """The objectives' names (val_acc, ...) on the study, so optuna-dashboard's axes say them, not "Objective 0"."""
    if study.metric_names != spec.metrics:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since 3.2, still marked
            study.set_metric_names(list(spec.metrics))

def _run_workers(spec: StudySpec, storage: str, parent_run_id: str, workers: int,
                 gpus: list[str] | None) -> bool:
    """N worker processes; True when one of them died (killed, crashed). A worker's outage (a server that
    stayed down, a full disk) comes back as its OutageError, once the workers have ended."""
    context = multiprocessing.get_context("spawn")
    threads = max(1, available_cores() // workers)  # no oversubscription of the cores
    devices = assign_gpus(workers, gpus)
    outage_lines = context.SimpleQueue()  # a worker's outage line, for this process to report
    processes = [context.Process(target=_worker_entry, name=f"study-worker-{index}",
                                 args=(spec, storage, parent_run_id, Seat(index, threads, devices[index], workers),
                                       outage_lines))
                 for index in range(workers)]
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
    if not outage_lines.empty():  # a server stayed down or the disk is full: the worker's own line
        message, server = outage_lines.get()
        # the parent run is closed next: not after another window for a server the worker gave up on
        raise backoff.mark_given_up(server, OutageError(message)) if server else OutageError(message)
    failed = [p for p in processes if p.exitcode != 0]
    for process in failed:
        log.warning("%s exited with code %s", process.name, process.exitcode)
    return bool(failed)

def check_base(spec: StudySpec, workers: int) -> None:
    """The base config's data and model load, before anything is written. On the CPU: this process keeps no CUDA
    context and no data set on a GPU for the study's length (workers train; --gpus may leave GPU 0 out). The
    device setting is still checked (device=cuda without a GPU is one line)."""
    select_device(spec.base.device)
    base = copy.deepcopy(spec.base)
    base.device = "cpu"
    model = prepare(base).model  # what needs the trial's device is checked on the model built for the CPU
    check_deterministic(model, torch.device(device_type(spec.base.device)), spec.base.train.deterministic)
    if workers > 1 or device_type(spec.base.device) != "cpu":  # workers load their own; one worker (this
        drop_cached_data()  # process) loads it again on its device

def assign_gpus(workers: int, gpus: list[str]) -> list[str | None]:
    """The GPU of each worker, round robin; None for all (the process's own view) with fewer than two GPUs."""
    if len(gpus) < 2:
        return [None] * workers
    return [gpus[index % len(gpus)] for index in range(workers)]

@dataclass(frozen=True)
class Seat:
    """What one worker process gets: its number, its share of the cores, its GPU (None: the process's own view)."""

    worker: int
    threads: int
    gpu: str | None
    workers: int = 1  # the study's worker processes on this machine: each fit's auto threads take a share

def _worker_entry(spec: StudySpec, storage: str, parent_run_id: str, seat: Seat,
                  outage_lines: multiprocessing.SimpleQueue) -> None:
    if seat.gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = seat.gpu  # before CUDA starts in this process: the worker sees one GPU
    logging.basicConfig(level=logging.WARNING, format=f"worker {seat.worker} %(levelname)s %(name)s: %(message)s")
    install_signal_handlers()
    end_with_parent()  # a kill -9 of the main process leaves no worker training unsupervised
    torch.set_num_threads(seat.threads)  # warm-up; each fit's prepare chooses again (core/threads.py)
    set_workers(seat.workers)
    try:
        work(spec, storage, parent_run_id, seat.worker)
    except BaseException as error:
        interrupt = interrupt_behind(error)
        stopped = outages.outage_behind(error) if interrupt is None else None  # any OutageError too
        if stopped is not None:  # its runs are closed; the main process reports it, in one line
            outage_lines.put((str(stopped), stopped.window_variable))
            raise SystemExit(OUTAGE_EXIT) from None
        if interrupt is None:
            raise
        raise SystemExit(exit_code(interrupt)) from None

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
    backend = open_storage(storage)
    study = optuna.load_study(study_name=spec.name, storage=backend, pruner=make_pruner(spec))
    study.sampler = make_sampler(spec, worker, len(study.get_trials(deepcopy=False)))  # a resume: fresh proposals
    reporter = StudyReporter(spec, study, storage, parent_run_id)
    warm_up(spec.base)
    started = time.monotonic()
    ran = 0
    bar = tqdm(total=spec.trials, initial=count_trials(study)[0], desc=f"study {spec.name}", unit="trial",
               disable=not progress)
    with objects_so_far_frozen(), bar:
        while spec.timeout is None or time.monotonic() - started < spec.timeout:
            stop_if_warned()  # a scheduler's warning came during the last trial: no new one
            trial = _next_trial(spec, study, storage)
            if trial is None:
                break
            with beating(backend, spec.name, trial.number):
                finished_trial = run_trial(spec, study, trial, parent_run_id)
            ran += 1
            reporter.after_trial(finished_trial)
            bar.n = count_trials(study)[0]
            bar.refresh()
    return ran

def _next_trial(spec: StudySpec, study: optuna.Study, storage: str) -> optuna.Trial | None:
    """A new trial, or None once the finished and running trials fill the budget or a stopping rule holds."""
    with budget_lock(storage, spec.name):
        fail_stale_trials(study, storage)  # a worker elsewhere died: its trial is retried, not counted as running
        finished, running = count_trials(study)
        if finished + running >= spec.trials or stopped_by(spec, study) is not None:
            return None
        recent = study.get_trials(deepcopy=False)[-FAILURES_IN_A_ROW:]
        if len(recent) == FAILURES_IN_A_ROW and all(t.state == optuna.trial.TrialState.FAIL for t in recent):
            # failed trials do not count towards the budget: when every one fails (a broken metric, missing
            # data), stop instead of asking for new ones for ever
            log.warning("study %s: the last %d trials all failed; stopping (see their fail_reason)",
                        spec.name, FAILURES_IN_A_ROW)
            return None
        with warnings.catch_warnings():
            # "Heartbeat of storage is supposed to be used with Study.optimize": study.heartbeat records it here
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            trial = study.ask()
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        return trial

def count_trials(study: optuna.Study) -> tuple[int, int]:
    """(finished: complete or pruned, running) trials of the study."""
    states = optuna.trial.TrialState
    trials = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED, states.RUNNING))
    running = sum(1 for t in trials if t.state == states.RUNNING)
    return len(trials) - running, running

def sweep_dead_trials(study: optuna.Study, storage: str) -> list[int]:
    """Fail the trials left RUNNING by dead workers of this host and queue their parameters again.

    Called holding the budget lock, under which a worker asks for a trial and records its host and pid: a
    RUNNING trial without a pid lost its worker in between (killed), on whatever host.

    The retry names the trial it repeats (user attribute `retry_of`) and its run (`resume_run_id`), whose
    checkpoint it resumes from (study.trial.resume_of). RDB storages also fail
    trials whose heartbeat stopped (workers on other machines), the same way.
    """
    fail_stale_trials(study, storage)
    host = socket.gethostname()
    swept = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        attrs = trial.user_attrs
        orphan = "pid" not in attrs
        if not orphan and (attrs.get("host") != host or process_alive(int(attrs["pid"]))):
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        if trial.params:
            retry = {"retry_of": trial.number, "retry_reason": f"worker {attrs.get('pid')} died"}
            if attrs.get("mlflow_run_id"):
                retry["resume_run_id"] = attrs["mlflow_run_id"]  # the retry goes on from its checkpoint, if any
            study.enqueue_trial(trial.params, user_attrs=retry, skip_if_exists=False)
        swept.append(trial.number)
    if swept:
        log.warning("trials %s were left RUNNING by dead workers: marked FAIL, parameters queued again", swept)
    return swept

def fail_stale_trials(study: optuna.Study, storage: str) -> None:
    """On an RDB storage, fail the trials whose heartbeat stopped for the grace period and retry them once
    (storage.RetryStaleTrial, which also ends their MLflow runs FAILED). Nothing on a journal file."""
    if is_rdb(storage):
        with experimental_heartbeat():
            optuna.storages.fail_stale_trials(study)
