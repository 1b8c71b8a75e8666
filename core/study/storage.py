"""Where Optuna keeps a study, and a lock so parallel workers never overshoot the budget.

- a path (the default `mlruns/optuna.journal`): Optuna's JournalStorage, which
  takes concurrent writers on one machine (file locks, no "database is locked");
- `sqlite:///...`: RDBStorage with heartbeats, for one worker at a time;
- `postgresql://...` (or mysql): RDBStorage with heartbeats, for workers on many machines, whose every call
  waits through a restart of the server (`ServerStorage`, up to CORE_STORAGE_OUTAGE_SECONDS) and then
  ends the study with one OutageError line.

The heartbeat (study.heartbeat) is recorded every CORE_HEARTBEAT_SECONDS (default 20) while a trial runs;
a trial without one for CORE_HEARTBEAT_GRACE_SECONDS (default 3 beats) is failed and retried once.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import functools
import inspect
import json
import logging
import os
import random
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy
from optuna.exceptions import DuplicatedStudyError, ExperimentalWarning, StorageInternalError
from optuna.storages import BaseStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages._rdb import models as rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial

from core import backoff
from core.errors import OutageError, UserError, cause_where
from core.locks import folder_lock
from core.runs.run import fail_tree
from core.store_dir import make_folder

log = logging.getLogger(__name__)

RDB_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "postgres", "mysql", "mysql+pymysql")
HEARTBEAT_SECONDS = 20  # defaults; the environment variables below set them (tests use a second or two)
GRACE_BEATS = 3
OUTAGE_VARIABLE, OUTAGE_SECONDS = "CORE_STORAGE_OUTAGE_SECONDS", 120


def heartbeat_seconds() -> int:
    """How often a running trial's heartbeat is recorded (Optuna takes whole seconds)."""
    return max(1, round(backoff.seconds("CORE_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)))


def grace_seconds() -> int:
    """How long a trial may go without a heartbeat before a sweep fails it as dead."""
    return max(1, round(backoff.seconds("CORE_HEARTBEAT_GRACE_SECONDS", GRACE_BEATS * heartbeat_seconds())))


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
        _check_journal(Path(url))


def _check_journal(path: Path) -> None:
    """A directory, or a file that is not an Optuna journal (its first record), is refused before anything is made."""
    if path.is_dir():
        raise UserError(f"storage {path} is a directory: give a journal file, e.g. {path / 'optuna.journal'}")
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb") as handle:
        first = handle.readline(1 << 20)
    if _record(first) is None and not _torn_first_record(first):
        raise UserError(f"storage {path} is not an Optuna journal (its first line is not a journal record); "
                        f"give another --storage, or move the file away")


def _record(line: bytes) -> dict | None:
    """A complete journal record: a line that ends in a newline and holds a JSON object (as Optuna reads them)."""
    if not line.endswith(b"\n"):
        return None
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return record if isinstance(record, dict) and "op_code" in record else None


def _torn_first_record(line: bytes) -> bool:
    """The start of the journal's first record, cut short (the whole file is one torn write)."""
    return not line.endswith(b"\n") and line.startswith(b'{"op_code"')


def _check_writable(path: Path) -> None:
    if path.exists() and not path.is_file() and not path.is_dir():  # /dev/null takes writes, then fails fsync
        raise UserError(f"storage {path} is not a regular file (a device, a pipe or a socket): give a file path")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"storage {path}: cannot write under {parent}")


def _sqlalchemy_url(url: str) -> str:
    return "postgresql://" + url[len("postgres://"):] if url.startswith("postgres://") else url


def open_storage(url: str) -> BaseStorage:
    """The Optuna storage object for `url` (creates the schema or file on first use)."""
    remember(url)
    if is_rdb(url):
        sqlite = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
        if sqlite is not None:
            sqlite.parent.mkdir(parents=True, exist_ok=True)
            # Two first starts at once would both create Optuna's tables: one at a time on a new SQLite file.
            with experimental_heartbeat(), folder_lock(sqlite.parent):
                return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}, **_heartbeat_kwargs())
        database_server(url).window()  # a bad CORE_STORAGE_OUTAGE_SECONDS is one line now, not in an outage
        # pool_pre_ping: a pooled connection that a server restart cut is replaced before it is used
        with experimental_heartbeat():
            return wait_through_outage(lambda: ServerStorage(_sqlalchemy_url(url), engine_kwargs={
                "pool_pre_ping": True}, **_heartbeat_kwargs()), url)
    path = Path(url)
    make_folder(path.parent)  # says so when this starts a new store
    lock = JournalWriteLock(path)
    lock.acquire()  # no worker appends while the tail is checked
    try:
        cut_torn_tail(path)
    finally:
        lock.release()
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=lock))
    except ValueError as error:  # a record in the middle is damaged: Optuna reads no further
        raise UserError(f"journal {path} is damaged ({str(error).splitlines()[0]}); restore it from a backup "
                        f"or give another --storage") from None


def _heartbeat_kwargs() -> dict:
    """A worker that stops beating (study.heartbeat) is failed, and its parameters are retried once."""
    return {"heartbeat_interval": heartbeat_seconds(), "grace_period": grace_seconds(),
            "heartbeat_stale_trial_callback": RetryStaleTrial(max_retry=1)}


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeat stopped (a worker on another machine died), done as our sweep
    of dead workers of this host does it (runner.sweep_dead_trials): the retry is marked `retry_of`,
    `retry_reason` and `resume_run_id`, and the dead trial's MLflow runs, RUNNING for ever otherwise (no
    process of this host owns them), end FAILED with the reason."""

    def __call__(self, study, trial) -> None:
        attrs = trial.user_attrs
        reason = f"worker {attrs.get('pid', '?')} on {attrs.get('host', '?')} stopped beating (heartbeat)"
        retry = copy.copy(trial)  # Optuna's callback queues a copy with these user attributes
        retry.user_attrs = {"retry_of": trial.number, "retry_reason": reason}
        if attrs.get("mlflow_run_id"):
            retry.user_attrs["resume_run_id"] = attrs["mlflow_run_id"]  # its checkpoint, if this host has it
        super().__call__(study, retry)
        log.warning("trial %d: %s; marked FAIL (its parameters queued again unless it was a retry already)",
                    trial.number, reason)
        if attrs.get("mlflow_run_id"):
            fail_tree(attrs["mlflow_run_id"], reason)


def database_server(url: str) -> backoff.Server:
    return backoff.Server(f"storage {_shown(url)}", OUTAGE_VARIABLE, OUTAGE_SECONDS, _connection_lost,
                          "the study stopped, its runs are closed: rerun the same command once the database is back")


def wait_through_outage(call: Callable, url: str):
    """`call()`, called again with backoff while the database server does not answer (a restart), for up to
    CORE_STORAGE_OUTAGE_SECONDS; beyond that an OutageError line. Other errors go through at once."""
    return backoff.patiently(call, database_server(url), "a storage call")


def _connection_lost(error: BaseException | None) -> bool:
    """The server is away: the nearest database error behind `error` is a lost or refused connection (not
    behind an OutageError: an inner call's wait already ran out). An error the server answered with is not."""
    return _answer(error) == "lost"


def _conflict(error: BaseException | None) -> bool:
    """A deadlock or serialization failure: the server rolled the transaction back and asks for it again."""
    return _answer(error) == "conflict"


PG_LOST = ("57P01", "57P02", "57P03")  # admin or crash shutdown, starting up; class 08 is a connection exception
PG_CONFLICT = ("40P01", "40001")  # deadlock detected, serialization failure
MYSQL_LOST, MYSQL_CONFLICT = (2002, 2003, 2006, 2013), (1213,)  # cannot connect, gone away, lost; deadlock


def _answer(error: BaseException | None) -> str:
    """"lost", "conflict" or "other", from the database error nearest the top of the chain."""
    found = cause_where(error, lambda cause: isinstance(cause, (sqlalchemy.exc.DBAPIError, CommitUnknown)),
                        stop=lambda cause: isinstance(cause, OutageError))
    if isinstance(found, CommitUnknown) or (found is not None and found.connection_invalidated):
        return "lost"
    if found is None:
        return "other"
    orig = found.orig
    if hasattr(orig, "sqlstate") or hasattr(orig, "pgcode"):  # psycopg, psycopg2: the server's SQLSTATE
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if code is None:  # no SQLSTATE: the client library failed (refused, cut), no answer came
            lost = isinstance(found, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError))
            return "lost" if lost else "other"
        return "conflict" if code in PG_CONFLICT else "lost" if code[:2] == "08" or code in PG_LOST else "other"
    number = orig.args[0] if type(orig).__module__.startswith(("pymysql", "MySQLdb")) and orig.args else None
    return "lost" if number in MYSQL_LOST else "conflict" if number in MYSQL_CONFLICT else "other"


def database_answer(error: BaseException | None) -> str | None:
    """What the database server answered (its first line), when an error it answered with is behind `error`:
    the CLI says that in one line instead of a traceback (a lost connection is an outage instead)."""
    found = cause_where(error, lambda cause: isinstance(cause, sqlalchemy.exc.DBAPIError))
    if found is None or _answer(error) == "lost":
        return None
    return str(found.orig).strip().splitlines()[0] if str(found.orig).strip() else type(found.orig).__name__


class CommitUnknown(Exception):
    """A create's commit was sent, its answer lost, and the server still runs that transaction: ask again."""


HIDDEN = "***"  # sqlalchemy's mark for a password left out of a URL
_opened: dict[str, str] = {}  # the URLs this process opened, by their logged form (a page reopens them)


def _shown(url: str) -> str:
    return sqlalchemy.engine.make_url(_sqlalchemy_url(url)).render_as_string(hide_password=True)


def as_logged(url: str) -> str:
    """The storage URL as a run's tag or a printed line keeps it: a server URL's password hidden, for whoever
    reads the store (or a shared log file) is not owed the database's password."""
    return _shown(url) if is_rdb(url) else url


def logged_to_open(logged: str) -> str:
    """The URL to open a storage a run logged (as_logged): as this process opened it, else without the hidden
    password, which PostgreSQL's client then takes from PGPASSWORD or ~/.pgpass."""
    if logged in _opened or not is_rdb(logged):
        return _opened.get(logged, logged)
    url = sqlalchemy.engine.make_url(_sqlalchemy_url(logged))
    if url.password == HIDDEN:  # (URL.set cannot unset: None there means "unchanged")
        url = sqlalchemy.engine.URL.create(url.drivername, url.username, None, url.host, url.port, url.database,
                                           url.query)
    return url.render_as_string(hide_password=False)


def remember(url: str) -> None:
    """A storage URL given to this process (`report --storage`, a study's own): what logged_to_open answers."""
    _opened[as_logged(url)] = url


CONFLICT_TRIES = 5  # a deadlock or serialization failure is tried again this often, at once, then raised
_inside = threading.local()  # a storage call in progress on this thread: its inner calls are not retried apart


class ServerStorage(RDBStorage):
    """RDBStorage on a database server. Each call that reaches the database (public or not: Optuna's
    fail_stale_trials calls _get_stale_trial_ids) waits through a restart (wait_through_outage) and is tried
    again at once after a deadlock; any other error goes through as itself. A call cut off mid-way is made
    again from its start in a new session; a create whose answer was lost first asks the server whether its
    transaction committed (PostgreSQL's txid_status), so it is never made twice."""

    def _retrying(self, call: Callable, retry_also: Callable[[BaseException], bool] = _conflict):
        if getattr(_inside, "call", False):
            return call()  # the outermost call retries, whole
        _inside.call = True
        try:
            for attempt in range(1, CONFLICT_TRIES + 1):
                try:
                    return wait_through_outage(call, self.url)
                except Exception as error:
                    if attempt == CONFLICT_TRIES or not (_conflict(error) or retry_also(error)):
                        raise
                    log.info("storage call: %s; trying again", backoff.first_line(error))
                    time.sleep(random.uniform(0, 0.02 * attempt))  # two deadlocked callers do not meet again
        finally:
            _inside.call = False

    create_new_trial = RDBStorage.create_new_trial  # not wrapped: _create_new_trial below retries, as a create

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        sent = _Sent()
        # Optuna retries any StorageInternalError of a create (a lock timeout, a deadlock): so do we, safely
        return self._retrying(lambda: self._create_trial(study_id, template_trial, sent),
                              retry_also=lambda error: isinstance(error, StorageInternalError))

    def _create_trial(self, study_id: int, template: FrozenTrial | None, sent: _Sent) -> FrozenTrial:
        if sent.landed(self.engine):
            return sent.result
        with _create_scoped_session(self.scoped_session) as session:
            # the study row's lock makes the trial's number one of a kind (as in Optuna's own create)
            rdb_models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
            trial = self._get_prepared_new_trial(study_id, template, session)
            sent.before_commit(session, _frozen(trial, template))
        return sent.result

    def create_new_study(self, directions, study_name: str | None = None) -> int:
        sent = _Sent()
        return self._retrying(lambda: self._create_study(list(directions), study_name, sent))

    def _create_study(self, directions: list, study_name: str | None, sent: _Sent) -> int:
        if not sent.landed(self.engine):
            try:
                with _create_scoped_session(self.scoped_session) as session:
                    name = self._create_unique_study_name(session) if study_name is None else study_name
                    session.add(rdb_models.StudyModel(study_name=name, directions=[
                        rdb_models.StudyDirectionModel(objective=n, direction=d) for n, d in enumerate(directions)]))
                    sent.before_commit(session, name)
            except sqlalchemy.exc.IntegrityError:
                raise DuplicatedStudyError from None
            logging.getLogger("optuna.storages._rdb.storage").info(f"A new study created in RDB with name: {name}")
        return self.get_study_id_from_name(sent.result)


class _Sent:
    """What a create's last try sent: its transaction id (PostgreSQL) and its result, kept across tries."""

    def __init__(self):
        self.xid: int | None = None
        self.result = None

    def before_commit(self, session, result) -> None:
        if session.bind.dialect.name == "postgresql":  # elsewhere a lost answer cannot be asked about: made again
            self.xid = session.execute(sqlalchemy.text("SELECT txid_current()")).scalar()
        self.result = result

    def landed(self, engine: sqlalchemy.Engine) -> bool:
        """Whether the last try's commit reached the server (its answer was lost), asked of the server."""
        if self.xid is None:
            return False
        with engine.connect() as connection:
            status = connection.execute(sqlalchemy.text("SELECT txid_status(:xid)"), {"xid": self.xid}).scalar()
        if status == "in progress":
            raise CommitUnknown(f"transaction {self.xid} of a create is still in progress on the server")
        if status != "committed":
            self.xid = None
        return status == "committed"


def _frozen(trial, template: FrozenTrial | None) -> FrozenTrial:
    """The new trial as Optuna's own create returns it (optuna/storages/_rdb/storage.py, _create_new_trial)."""
    if template is not None:
        frozen = copy.deepcopy(template)
        frozen.number, frozen.datetime_start, frozen._trial_id = trial.number, trial.datetime_start, trial.trial_id
        return frozen
    return FrozenTrial(number=trial.number, state=trial.state, value=None, values=None,
                       datetime_start=trial.datetime_start, datetime_complete=None, params={}, distributions={},
                       user_attrs={}, system_attrs={}, intermediate_values={}, trial_id=trial.trial_id)


def _retried(name: str) -> Callable:
    """RDBStorage's method `name`, looked up at each call (a patch of Optuna's class still applies)."""
    @functools.wraps(getattr(RDBStorage, name))
    def call(self, *args, **kwargs):
        return self._retrying(lambda: getattr(RDBStorage, name)(self, *args, **kwargs))
    return call


for _name, _method in vars(RDBStorage).items():
    # every method that opens a session of its own; one given a session runs inside its caller's try
    if inspect.isfunction(_method) and not _name.startswith("__") and _name not in vars(ServerStorage) and \
            "session" not in inspect.signature(_method).parameters:
        setattr(ServerStorage, _name, _retried(_name))


def cut_torn_tail(path: Path) -> int:
    """Cut a half-written last record (a full disk, a kill mid-write) back to the last complete one.

    Optuna skips a torn last line, but the next append lands on the same line, and from then on every read of
    the journal fails, for every study in it. The cut bytes are kept beside it in `<journal>.torn-<time>`.
    Call it holding the journal's write lock. Returns the number of bytes cut.
    """
    if not path.is_file():
        return 0
    with open(path, "rb") as handle:
        size = handle.seek(0, os.SEEK_END)
        start, lines = _last_lines(handle, size)
    if not lines or _record(lines[-1]) is not None:
        return 0
    whole = len(lines) > 1 and _record(lines[-2]) is not None
    if not whole and not (start == 0 and len(lines) == 1 and _torn_first_record(lines[0])):
        return 0  # damaged elsewhere too: not a torn write; opening it says so
    keep = size - len(lines[-1])
    torn = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
    torn.write_bytes(lines[-1])
    with open(path, "r+b") as handle:
        handle.truncate(keep)
        os.fsync(handle.fileno())
    log.warning("%s ended in a half-written record (%d bytes, a full disk or a kill mid-write): cut back to the "
                "last complete record; the cut bytes are in %s", path, len(lines[-1]), torn)
    return len(lines[-1])


def _last_lines(handle, size: int) -> tuple[int, list[bytes]]:
    """(offset of the window, its lines) for the smallest window at the end that holds the last two lines."""
    window = 1 << 16
    while True:
        start = max(0, size - window)
        handle.seek(start)
        pieces = handle.read(size - start).split(b"\n")
        lines = [piece + b"\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
        if start == 0 or len(lines) > 2:
            return start, lines[-2:]
        window *= 4


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
        connection = wait_through_outage(lambda: _advisory_lock(url, key), url)
        try:
            yield
        finally:
            _advisory_unlock(connection, key)
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


def _advisory_lock(url: str, key: int) -> sqlalchemy.Connection:
    connection = _advisory_engine(url).connect()
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": key})
    except BaseException:
        connection.close()
        raise
    return connection


def _advisory_unlock(connection: sqlalchemy.Connection, key: int) -> None:
    try:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()
    except sqlalchemy.exc.DBAPIError as error:
        if not _connection_lost(error):
            raise
        # the server restarted while we held the lock: it ended with the session that held it
    finally:
        connection.close()


_ENGINES: dict[str, sqlalchemy.Engine] = {}


def _advisory_engine(url: str) -> sqlalchemy.Engine:
    if url not in _ENGINES:
        _ENGINES[url] = sqlalchemy.create_engine(_sqlalchemy_url(url), pool_size=1, pool_pre_ping=True)
    return _ENGINES[url]
