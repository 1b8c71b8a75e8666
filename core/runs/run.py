"""Opening and ending runs (`open_run`, the one place a run starts), and `Run`, the handle to log through.

Every run we open is tagged with the host and process that own it and ends FINISHED, FAILED (its error kept
as tags) or KILLED (Ctrl-C, SIGTERM); its `state` tag (complete, pruned, failed, killed...) is written just
before it ends, so no reader sees an ended run without one. A run left RUNNING by a dead process is marked
FAILED by the next command (`sweep_stale_runs`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

from core import outages
from core.runs.place import Place
from core.signals import interrupt_behind
from core.tracking import mlflow_store
from core.tracking.mlflow_sink import MLflowTracker

log = logging.getLogger(__name__)

NOTE_TAG = mlflow_store.NOTE_TAG  # the run's description in the MLflow UI (markdown)


class Run:
    """A run of the store: the handle callers log through (values now, or batched through `recorder()`)."""

    def __init__(self, run_id: str, place: Place):
        self.id, self.place = run_id, place
        self.state = ""  # the `state` tag written when open_run ends it (e.g. complete, pruned, failed)
        self.status = "FINISHED"  # how open_run ends it when its block ends without an error
        self._when_finished: list[Callable[[], None]] = []

    @classmethod
    def of(cls, run_id: str, experiment: str) -> Run:
        """A handle to a run another process (or an earlier command) opened: to log to, never to end."""
        return cls(run_id, Place(experiment, ""))

    @property
    def experiment(self) -> str:
        return self.place.experiment

    def when_finished(self, step: Callable[[], None]) -> None:
        """Do `step` once the run has ended FINISHED (e.g. remove its checkpoints), not on any other end."""
        self._when_finished.append(step)

    def conclude(self, state: str, status: str = "FINISHED") -> None:
        """How the run ends when its block does: the `state` tag and the end status."""
        self.state, self.status = state, status

    @contextlib.contextmanager
    def recorder(self) -> Iterator[MLflowTracker]:
        """A batched writer of this run's values, files and figures, closed (everything sent) on the way out."""
        with contextlib.closing(MLflowTracker(self.id, self.experiment)) as record:
            yield record

    def child(self, name: str, tags: dict[str, str], label: str = "", env: str = "") -> Place:
        """Where a child run of this one sits."""
        return Place(self.experiment, name, self.id, tags, label, env)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tags, in one call. Several workers may set the same new tag of a shared run at once: MLflow's SQL
        store looks a tag up, then inserts it, so the second collides on its unique key; trying again finds
        the tag and updates it."""
        from mlflow.entities import RunTag
        from mlflow.exceptions import MlflowException

        batch = [RunTag(key, str(value)) for key, value in tags.items()]
        try:
            mlflow_store.client().log_batch(self.id, tags=batch)
        except MlflowException:
            mlflow_store.client().log_batch(self.id, tags=batch)

    def log_values(self, metrics: dict[str, float], step: int) -> None:
        """Metrics now, in one call (a study's cheap facts after each trial)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        mlflow_store.client().log_batch(self.id, metrics=[Metric(key, float(value), now, int(step))
                                                          for key, value in metrics.items()])

    def log_text(self, text: str, path: str) -> None:
        mlflow_store.client().log_text(self.id, text, path)

    def log_artifact(self, path: Path, folder: str) -> None:
        mlflow_store.client().log_artifact(self.id, str(path), folder)

    def read_text(self, path: str) -> str | None:
        """A text artifact of the run (e.g. a study's final/final.json); None when it has none."""
        import tempfile

        client = mlflow_store.client()
        folder, _, name = path.rpartition("/")
        if not any(item.path == path for item in client.list_artifacts(self.id, folder or None)):
            return None
        with tempfile.TemporaryDirectory() as local:
            return Path(client.download_artifacts(self.id, path, local)).read_text(encoding="utf-8")

    def rename(self, name: str) -> None:
        """A new run name (an ended run too: a trial's says how it ended)."""
        mlflow_store.client().update_run(self.id, name=name)

    def metrics(self) -> dict[str, float]:
        """The run's latest value of each metric."""
        return dict(mlflow_store.client().get_run(self.id).data.metrics)

    def tags(self) -> dict[str, str]:
        return dict(mlflow_store.client().get_run(self.id).data.tags)

    def status_now(self) -> str:
        return mlflow_store.client().get_run(self.id).info.status


def active(run_id: str) -> bool:
    """The run exists and is not deleted. Only a missing run is False: an outage goes through (a resumed study
    must not open a second parent run because its store did not answer)."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_store.client().get_run(run_id).info.lifecycle_stage == "active"
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


@contextlib.contextmanager
def open_run(place: Place) -> Iterator[Run]:
    """A run (new, or `place.reopen` when it is still there) that ends FINISHED (or as `Run.conclude` said),
    FAILED (the error kept as tags) or KILLED (Ctrl-C, SIGTERM, also when clean-up after one failed). In an
    outage the run is closed in the room the store's reserve leaves, or left to the next command's sweep."""
    run = Run(_reopen(place) if place.reopen and active(place.reopen) else _start(place), place)
    try:
        yield run
    except BaseException as error:
        if interrupt_behind(error) is not None:
            _end(run, "KILLED", "killed")
            raise
        stopped = outages.outage_behind(error)  # a full disk: the store's reserve is given up, to close the run
        _end_failed(run, error, quiet=stopped is not None)
        outages.raise_outage_behind(error)
        raise
    _end(run, run.status, run.state)
    if run.status == "FINISHED":
        for step in run._when_finished:
            step()


def _start(place: Place) -> str:
    tags = {**mlflow_store.owner_tags(), **place.tags}
    if place.parent_run_id:
        tags[mlflow_store.PARENT_TAG] = place.parent_run_id
    client = mlflow_store.client()
    return client.create_run(mlflow_store.experiment_id(place.experiment), run_name=place.name,
                             tags=tags).info.run_id


# What an earlier end wrote on a run (the stale-run sweep's error, a killed run's state): gone once it goes on, so
# a reopened run that ends FINISHED does not still read as failed or killed.
END_TAGS = ("error", "traceback", "state")


def _reopen(place: Place) -> str:
    """The run goes on, owned by this process now."""
    client = mlflow_store.client()
    client.update_run(place.reopen, status="RUNNING")
    for key, value in mlflow_store.owner_tags().items():
        client.set_tag(place.reopen, key, value)
    ended = client.get_run(place.reopen).data.tags
    for key in END_TAGS:
        if key in ended:
            client.delete_tag(place.reopen, key)
    return place.reopen


def _end(run: Run, status: str, state: str) -> None:
    if status == "KILLED":
        mlflow_store.drop_pooled_connections()  # a signal may have cut a query short
    if state:
        mlflow_store.client().set_tag(run.id, "state", state)
    mlflow_store.client().set_terminated(run.id, status=status)


def _end_failed(run: Run, error: BaseException, quiet: bool) -> None:
    """End the run FAILED with its error as tags. `quiet`: in an outage, a store that cannot take even that
    leaves the run RUNNING for the next command's stale-run sweep, and the outage is what gets reported."""
    try:
        client = mlflow_store.client()
        client.set_tag(run.id, "error", f"{type(error).__name__}: {error}"[:5000])
        client.set_tag(run.id, "traceback", traceback.format_exc()[-5000:])
        _end(run, "FAILED", "failed")
    except Exception as closing:
        if not quiet:
            raise
        log.debug("run %s not closed (%s); the next command marks it FAILED", run.id, closing)


def open_store(experiment: str) -> None:
    """The store's schema and the experiment, made once, before workers start."""
    mlflow_store.experiment_id(experiment)


def sweep_stale_runs(experiments: list[str] | None = None) -> list[str]:
    """Mark FAILED the runs left RUNNING by dead processes of this host (of these experiments, or all)."""
    ids = None if experiments is None else [mlflow_store.experiment_id(name) for name in experiments]
    return mlflow_store.fail_stale_runs(ids)


def fail_tree(run_id: str, reason: str) -> list[str]:
    """Mark FAILED a run and its RUNNING children (a trial of a worker on another host that stopped beating)."""
    return mlflow_store.fail_run_tree(run_id, reason)
