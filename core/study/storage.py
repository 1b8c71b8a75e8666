"""Where Optuna keeps a study, and a lock so parallel workers never overshoot the budget.

- a path (the default `mlruns/optuna.journal`): Optuna's JournalStorage, which
  takes concurrent writers on one machine (file locks, no "database is locked");
- `sqlite:///...`: RDBStorage with heartbeats, for one worker at a time;
- `postgresql://...` (or mysql): RDBStorage with heartbeats, for workers on many machines.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy
from optuna.exceptions import ExperimentalWarning
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from core.errors import UserError

RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgres", "mysql", "mysql+pymysql")
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 60


def is_rdb(url: str) -> bool:
    return urlparse(url).scheme in RDB_SCHEMES


def check_storage(url: str) -> None:
    """Refuse a storage we cannot use, in one line, before any study or trial is made."""
    scheme = urlparse(url).scheme
    if "://" in url and scheme not in RDB_SCHEMES:
        raise UserError(f"storage {url!r}: use a journal file path, sqlite:///file.db or postgresql://user@host/db")
    if scheme == "sqlite":
        path = Path(url[len("sqlite:///"):])
        if not url.startswith("sqlite:///") or not path.name:
            raise UserError(f"storage {url!r}: use sqlite:///path/to/optuna.db")
        _check_writable(path)
    elif scheme in RDB_SCHEMES:
        try:
            engine = sqlalchemy.create_engine(_sqlalchemy_url(url), connect_args={"connect_timeout": 5})
            with engine.connect():
                pass
            engine.dispose()
        except Exception as error:
            raise UserError(f"storage {url} cannot be reached: {str(error).strip().splitlines()[0]}") from None
    else:
        _check_writable(Path(url))


def _check_writable(path: Path) -> None:
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"storage {path}: cannot write under {parent}")


def _sqlalchemy_url(url: str) -> str:
    return "postgresql://" + url[len("postgres://"):] if url.startswith("postgres://") else url


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage object for `url` (creates the schema or file on first use)."""
    if is_rdb(url):
        engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        # A worker that stops beating is failed, and its parameters are retried once.
        with experimental_heartbeat():
            return RDBStorage(_sqlalchemy_url(url), engine_kwargs=engine, heartbeat_interval=HEARTBEAT_SECONDS,
                              grace_period=GRACE_SECONDS,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalWriteLock(path)))


@contextlib.contextmanager
def experimental_heartbeat() -> Iterator[None]:
    """Optuna's heartbeat (heartbeat_interval, RetryHeartbeatStaleTrialCallback, fail_stale_trials) is marked
    experimental and has no stable replacement in Optuna 5; Optuna silences the same warning when it uses
    fail_stale_trials itself (optuna/study/_optimize.py). Only that warning, only around those calls."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


class JournalWriteLock:
    """The journal's write lock: an flock(2) on a file beside it, which the kernel drops when its process dies.

    Optuna's default lock is a symlink that outlives a worker killed with SIGKILL while it writes; with a
    relative journal path the link even points nowhere, so its grace period never starts and the other
    workers spin at full CPU for ever. (Duck-typed: Optuna only calls acquire and release.)
    """

    def __init__(self, journal: Path):
        self._path = journal.with_name(journal.name + ".write.lock")
        self._held = contextlib.ExitStack()

    def acquire(self) -> bool:
        self._held.enter_context(_file_lock(self._path))
        return True

    def release(self) -> None:
        self._held.close()


@contextlib.contextmanager
def budget_lock(url: str, study_name: str) -> Iterator[None]:
    """Held while a worker counts trials and asks for a new one, so N workers start exactly the budget.

    A file lock beside the storage on one machine; a PostgreSQL advisory lock across machines.
    """
    scheme = urlparse(url).scheme
    if scheme.startswith("postgres"):
        key = zlib.crc32(f"core-study:{study_name}".encode())
        engine = _advisory_engine(url)
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
        return
    path = Path(url[len("sqlite:///"):]) if scheme == "sqlite" else Path(url)
    lock_path = path.with_name(path.name + ".budget.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(lock_path):
        yield


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`, waited for; released on exit, or by the kernel if the process dies."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_ENGINES: dict[str, sqlalchemy.Engine] = {}


def _advisory_engine(url: str) -> sqlalchemy.Engine:
    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(_sqlalchemy_url(url), pool_size=1, pool_pre_ping=True)
    return _ENGINES[url]
