"""Which database errors the storage waits out (the server is away), tries again at once (a deadlock), or lets
through as themselves (anything else the server answered) — issue 38; tests/faults/test_storage_errors.py
shows each on a real PostgreSQL."""

from __future__ import annotations

import psycopg
import psycopg.errors
import pytest
import sqlalchemy
from optuna.exceptions import StorageInternalError

from core.errors import OutageError
from core.study.storage import _answer

OPERATIONAL, PROGRAMMING = sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError


@pytest.mark.parametrize("wrapper, driver_error, answer", [
    (OPERATIONAL, psycopg.OperationalError("connection failed: Connection refused"), "lost"),  # no SQLSTATE
    (OPERATIONAL, psycopg.errors.AdminShutdown("terminating connection due to administrator command"), "lost"),
    (OPERATIONAL, psycopg.errors.CannotConnectNow("the database system is starting up"), "lost"),
    (OPERATIONAL, psycopg.errors.DeadlockDetected("deadlock detected"), "conflict"),
    (OPERATIONAL, psycopg.errors.SerializationFailure("could not serialize access"), "conflict"),
    (OPERATIONAL, psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"), "other"),
    (OPERATIONAL, psycopg.errors.DiskFull("could not extend file"), "other"),
    (PROGRAMMING, psycopg.ProgrammingError("a client-side misuse, no SQLSTATE"), "other"),
    (OPERATIONAL, Exception("database is locked"), "other"),  # SQLite's, or a driver we do not know
])
def test_a_database_error_is_told_by_what_the_server_answered(wrapper, driver_error, answer):
    error = wrapper("SELECT 1", None, driver_error)
    assert _answer(error) == answer
    try:  # as Optuna raises it: a StorageInternalError from the SQLAlchemy error
        raise StorageInternalError("An exception is raised during the commit.") from error
    except StorageInternalError as wrapped:
        assert _answer(wrapped) == answer


def test_an_error_behind_an_outage_already_declared_is_not_waited_again():
    error = OPERATIONAL("SELECT 1", None, psycopg.OperationalError("connection refused"))
    try:
        raise OutageError("storage did not answer") from error
    except OutageError as outage:
        assert _answer(outage) == "other"


def test_an_answer_of_the_database_is_one_line_on_the_command_line(tmp_path, monkeypatch, capsys):
    import core.study.runner
    from core.__main__ import main
    from tests.helpers import tiny_study_spec

    answered = OPERATIONAL("UPDATE trials ...", None,
                           psycopg.errors.LockNotAvailable("canceling statement due to lock timeout\nCONTEXT: ..."))

    def locked(*args, **kwargs):
        raise StorageInternalError("An exception is raised during the commit.") from answered

    monkeypatch.setattr(core.study.runner, "run_study", locked)
    code = main(["study", str(tiny_study_spec(tmp_path))])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and lines == ["error: the storage's database answered: canceling statement due to lock timeout"]


def test_a_storage_password_is_never_logged_and_a_logged_url_opens_without_it():
    from core.study.storage import as_logged, logged_to_open, remember

    url = "postgresql://me:s3cret@db.example.org:5433/optuna"
    assert as_logged(url) == "postgresql://me:***@db.example.org:5433/optuna"
    assert as_logged("mlruns/optuna.journal") == "mlruns/optuna.journal"
    # another process (report, a page): the password from PGPASSWORD or ~/.pgpass, not "***"
    assert logged_to_open(as_logged(url)) == "postgresql://me@db.example.org:5433/optuna"
    remember(url)  # this process was given it (the study itself, report --storage)
    assert logged_to_open(as_logged(url)) == url
