"""The MLflow store: where it is, experiments, and runs whose end state is true.

The store is `MLFLOW_TRACKING_URI`, or `mlflow.db` with artifacts under `artifacts/` in the
nearest `mlruns/` from the current folder up (core.store_dir). Every run we open is tagged with the host
and process that own it, ends FINISHED, FAILED or KILLED (`open_run`), and a
run left RUNNING by a process that is gone is marked FAILED (`fail_stale_runs`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import time
import urllib.parse
from pathlib import Path
from urllib.parse import urlparse

from core import outages
from core.errors import UserError
from core.locks import folder_lock
from core.names import safe_name
from core.signals import process_alive
from core.store_dir import make_folder, store_dir
from core.tracking import outage

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in logs and tests
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no calls home: runs work offline
# MLflow sets its own loggers to INFO when imported ("Creating initial MLflow database tables..."): warnings only.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(store_dir() / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:/// URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside its database; a server decides for itself."""
    path = sqlite_path(uri)
    if path is not None:
        return (path.parent / "artifacts").resolve().as_uri()
    if uri.startswith(("postgresql", "mysql")):
        return (store_dir() / "artifacts").resolve().as_uri()
    return None


def check_uri(uri: str) -> None:
    """Refuse a tracking URI we cannot use, with one line, before anything is written."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None or not path.name:
            raise UserError(f"tracking URI {uri!r}: use sqlite:///path/to/mlflow.db")
        parent = path.parent
        while not parent.exists():
            parent = parent.parent
        if not os.access(parent, os.W_OK) and not (_reading_only and path.is_file()):
            raise UserError(f"tracking URI {uri!r}: cannot write under {parent}")
        return
    if scheme in ("http", "https"):
        import urllib.request
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5).read()
        except Exception as error:
            raise UserError(f"tracking server {uri} does not answer ({error}); "
                            f"start it or fix MLFLOW_TRACKING_URI") from None
        return
    if scheme.startswith(("postgresql", "mysql")):
        return
    raise UserError(f"tracking URI {uri!r} is not supported: use sqlite:///..., http(s)://... or postgresql://...")


_OPENED: dict[str, str] = {}  # a store's URI -> the URI it was opened by, where they differ (read-only SQLite)
_reading_only = False  # set by commands that only read runs (evaluate): a read-only store will do


def reading_only() -> None:
    """This process only reads the store: an archived one (read-only folder or mount) is opened as it is."""
    global _reading_only
    _reading_only = True


@functools.lru_cache(maxsize=8)
def _client_for(uri: str):
    """Checked and opened once per URI and process (a failed check is not cached, so it is tried again)."""
    import mlflow

    check_uri(uri)
    outage.window()  # a bad CORE_TRACKING_OUTAGE_SECONDS is one line now, not when a run is closed
    path = sqlite_path(uri)
    read_only = path is not None and _reading_only and path.is_file() and not os.access(path.parent, os.W_OK)
    if path is not None:
        _check_sqlite_file(path)
        make_folder(path.parent)
    if read_only:  # SQLite's WAL mode wants to write its -shm file even to read: opened immutable instead
        _OPENED[uri] = f"sqlite:///file:{urllib.parse.quote(str(path.resolve()))}?immutable=1&uri=true"
    mlflow.set_tracking_uri(_OPENED.get(uri, uri))
    # MLflow logs every SQL error it raises again with a traceback at ERROR: the raised error is enough
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    with contextlib.nullcontext() if path is None else folder_lock(path.parent):
        try:
            client = mlflow.MlflowClient(_OPENED.get(uri, uri))
            client.search_experiments(max_results=1)  # creates the schema once, and proves the store works
            if path is not None and not read_only:  # an archived store is read as it is
                _use_write_ahead_log(path)
                outages.guard_store(path.parent, path)
        except Exception as error:
            outages.raise_outage_behind(error)
            raise UserError(f"tracking store {uri} cannot be used: {str(error).splitlines()[0]}") from None
    return client


def store_folder() -> Path:
    """The folder of the store's files: the SQLite database's, else the nearest mlruns/ (artifacts, checkpoints)."""
    path = sqlite_path(tracking_uri())
    return (path.parent if path is not None else store_dir()).resolve()


SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


def _check_sqlite_file(path: Path) -> None:
    """A store file that is not a SQLite database (damaged, overwritten) is one line, before MLflow reads it."""
    if path.is_dir():
        raise UserError(f"tracking store {path} is a directory, not a SQLite database file")
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as handle:
            if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
                raise UserError(f"tracking store {path} is not a SQLite database (damaged or overwritten); "
                                f"restore it from a backup, or move it away to start a new store")


def _use_write_ahead_log(path: Path) -> None:
    """SQLite's WAL mode (kept in the file): readers never wait for writers, and commits cost less."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(path, timeout=60)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")


def client():
    """The MLflow client of the current store (opened and checked once per process); a tracking server's
    client waits out outages shorter than the window (core/tracking/outage.py)."""
    import mlflow

    uri = tracking_uri()
    mlflow_client = _client_for(uri)
    if mlflow.get_tracking_uri() != _OPENED.get(uri, uri):
        mlflow.set_tracking_uri(_OPENED.get(uri, uri))  # the fluent API (log_model) follows the store in use now
    return PatientClient(mlflow_client, uri) if urlparse(uri).scheme in ("http", "https") else mlflow_client


class PatientClient:
    """An MlflowClient whose calls are tried again while its server does not answer (`outage.patiently`).

    A call the server never received is safe to repeat; one whose answer was lost (the server died after
    writing) may be written twice, as with MLflow's own retries.
    """

    def __init__(self, mlflow_client, uri: str):
        self._client, self._uri = mlflow_client, uri

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_"):
            return attribute

        def patient(*args, **kwargs):
            return outage.patiently(lambda: attribute(*args, **kwargs), self._uri, name)
        return patient


def require_store() -> None:
    """The current store, which must already exist: commands that read runs never create one."""
    path = sqlite_path(tracking_uri())
    if path is not None and not path.is_file():
        raise UserError(f"no MLflow store at {path} (set MLFLOW_TRACKING_URI or run from the project folder)")
    client()


def existing_run(run_id: str):
    """A run of the current (existing) store; a missing run, or a store that fails to answer, is one UserError
    line, and only a missing run is called missing."""
    from mlflow.exceptions import MlflowException

    require_store()
    try:
        return client().get_run(run_id)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(f"no run {run_id} in {tracking_uri()}") from None
        raise UserError(f"run {run_id} cannot be read from {tracking_uri()}: "
                        f"{str(error).strip().splitlines()[0]}") from None


def experiment_id(name: str) -> str:
    """The id of experiment `name`, created (with artifacts beside the store) if missing."""
    mlflow_client = client()
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            mlflow_client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    root = artifact_root(tracking_uri())
    location = f"{root}/{safe_name(name)}" if root else None
    try:
        return mlflow_client.create_experiment(name, artifact_location=location)
    except Exception:
        # Another worker created it at the same moment.
        experiment = mlflow_client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def owner_tags() -> dict[str, str]:
    return {"host": socket.gethostname(), "pid": str(os.getpid())}


def drop_pooled_connections() -> None:
    """Close the store's idle connections; the next call opens a fresh one. Call it after Ctrl-C or SIGTERM.

    The signal can land while MLflow reads rows. SQLAlchemy closes the cursor only for an
    `Exception`, so the connection goes back to the pool still holding that query's SQLite
    snapshot, and its next write fails at once with "database is locked".
    """
    store = getattr(getattr(client(), "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)  # SQL stores only; an HTTP store has no pool here
    if engine is not None:
        engine.dispose()


def fail_stale_runs(experiment_ids: list[str] | None = None) -> list[str]:
    """Mark FAILED the runs left RUNNING by dead processes of this host; returns their ids.

    Runs of other hosts and of live processes are left alone.
    """
    mlflow_client = client()
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiment_ids:
        return []
    host = socket.gethostname()
    stale = []
    for run in mlflow_client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'",
                                         max_results=5000):
        tags = run.data.tags
        pid = tags.get("pid", "")
        if tags.get("host") != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        mlflow_client.set_tag(run.info.run_id, "error", f"process {pid} died while the run was RUNNING")
        mlflow_client.set_terminated(run.info.run_id, status="FAILED", end_time=int(time.time() * 1000))
        stale.append(run.info.run_id)
    if stale:
        log.warning("marked %d run(s) FAILED that were left RUNNING by dead processes", len(stale))
    return stale


def fail_run_tree(run_id: str, reason: str) -> list[str]:
    """Mark FAILED a run and its child runs (a K-fold trial's folds) that are still RUNNING, with the reason
    as their `error` tag: a trial of a worker on another host that stopped beating. Returns their ids."""
    mlflow_client = client()
    run = mlflow_client.get_run(run_id)
    children = mlflow_client.search_runs([run.info.experiment_id], max_results=5000,
                                         filter_string=f"tags.`{PARENT_TAG}` = '{run_id}' "
                                                       f"and attributes.status = 'RUNNING'")
    failed = []
    for stale in [run, *children]:
        if stale.info.status != "RUNNING":
            continue
        mlflow_client.set_tag(stale.info.run_id, "error", reason)
        mlflow_client.set_terminated(stale.info.run_id, status="FAILED", end_time=int(time.time() * 1000))
        failed.append(stale.info.run_id)
    return failed
