"""Resuming a run from its checkpoint: where checkpoints live, finding one, and removing it once done.

A run with `train.checkpoint=true` writes `checkpoints/<run_id>.pt` beside the
MLflow store (`mlruns/checkpoints/` by default) after every epoch. Not among the
run's artifacts: it is rewritten every epoch (an atomic rename needs a local
file) and is removed when the run finishes. A resumed run is a new MLflow run
tagged `resumed_from` (the old run id) and `resumed_at_epoch` (the first epoch
it trains): its per-epoch metrics start there, so no epoch is recorded twice in
one run, and the killed run keeps its true end state (FAILED or KILLED).
"""

from __future__ import annotations

import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core import checkpoint
from core.config import Config
from core.errors import UserError
from core.names import safe_name
from core.store_dir import store_dir
from core.tracking import mlflow_store

# what a checkpoint needs, besides model and config, to be resumed (older ones lack it)
RESUMABLE_KEYS = ("optimizer", "epoch", "scheduler", "early_stopping", "history", "step", "rng")


@dataclass
class Resume:
    """A run to go on from: its id, its loaded checkpoint, and (for `train --resume`) where it was recorded."""

    run_id: str
    state: dict[str, Any]
    experiment: str = ""
    run_name: str = ""

    @property
    def config(self) -> Config:
        return Config.from_flat(self.state["config"])

    @property
    def first_epoch(self) -> int:
        return int(self.state["epoch"]) + 1

    def tags(self) -> dict[str, str]:
        return {"resumed_from": self.run_id, "resumed_at_epoch": str(self.first_epoch)}


def checkpoint_file(run_id: str) -> Path:
    """`checkpoints/<run_id>.pt` beside the SQLite store, else in the nearest mlruns/ (a tracking server's artifacts are
    remote; checkpoints stay on the machine that trains)."""
    store = mlflow_store.sqlite_path(mlflow_store.tracking_uri())
    folder = store.parent if store is not None else store_dir()
    return folder / "checkpoints" / f"{safe_name(run_id)}.pt"


def load(run_id: str) -> Resume | None:
    """The run's checkpoint, or None when it has none; a corrupted or older one is a UserError."""
    path = checkpoint_file(run_id)
    if not path.is_file():
        return None
    state = checkpoint.load(path)
    missing = [key for key in RESUMABLE_KEYS if key not in state]
    if missing:
        raise UserError(f"checkpoint {path} cannot be resumed: it has no {', '.join(missing)} (an older version)")
    return Resume(run_id, state)


def find(run_id: str) -> Resume:
    """For `train --resume RUN_ID`: the run must exist, be over, and have a checkpoint; else one UserError."""
    mlflow_store.require_store()
    mlflow_store.fail_stale_runs()  # a run whose process was killed is RUNNING until this marks it FAILED
    run = mlflow_store.existing_run(run_id)
    client = mlflow_store.client()
    if run.info.status == "RUNNING":
        raise UserError(f"run {run_id} is still RUNNING (pid {run.data.tags.get('pid', '?')}); stop it first")
    _lock(run_id)
    resume = load(run_id)
    if resume is None:
        raise UserError(f"run {run_id} has no checkpoint at {checkpoint_file(run_id)} (a run writes one with "
                        f"train.checkpoint=true; a finished run's is removed)")
    resume.experiment = client.get_experiment(run.info.experiment_id).name
    resume.run_name = run.info.run_name
    return resume


_HELD: list = []  # the checkpoints this process resumes, locked until it exits


def _lock(run_id: str) -> None:
    """One resume of a run at a time: the killed run is FAILED, so two `train --resume` at once would both go on
    from it. An flock on its checkpoint, which the kernel drops with the process (a kill -9 included)."""
    try:
        handle = open(checkpoint_file(run_id), "rb")
    except FileNotFoundError:
        return  # no checkpoint: said next
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"run {run_id} is being resumed by another process now (its new run is tagged "
                        f"resumed_from={run_id}); wait for it to end") from None
    _HELD.append(handle)


def remove_checkpoints(run_id: str, resume: Resume | None) -> None:
    """After a run ended FINISHED: its checkpoint, and those of the chain of runs it went on from (each run's
    `resumed_from` tag names the one before), are not needed any more."""
    checkpoint_file(run_id).unlink(missing_ok=True)
    earlier, seen = resume.run_id if resume is not None else "", {run_id}
    while earlier and earlier not in seen:
        seen.add(earlier)
        checkpoint_file(earlier).unlink(missing_ok=True)
        earlier = mlflow_store.client().get_run(earlier).data.tags.get("resumed_from", "")
