"""What the storage's retries wait out, and what they do not (issue 38), on a real PostgreSQL cluster.

A deadlock is tried again at once; an error the server answered with (a lock timeout) goes through as itself
at once, not as an outage after the window; a create whose commit landed but whose answer was lost is not
made twice; the heartbeat sweep (fail_stale_trials, which calls a private method) waits out a short restart.
"""

from __future__ import annotations

import logging
import threading
import time

import optuna
import psycopg
import pytest
import sqlalchemy

from core import backoff
from core.errors import OutageError
from core.study import runner
from core.study import storage as storage_module
from tests.postgres import throwaway_cluster

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    with throwaway_cluster() as server:
        yield server


@pytest.fixture
def url(cluster, request):
    """A database of its own for each test (name from the test's index)."""
    name = f"t{abs(hash(request.node.name)) % 10**8}"
    engine = sqlalchemy.create_engine(f"{cluster.url}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return f"{cluster.url}/{name}"


@pytest.fixture
def storage(url, monkeypatch):
    monkeypatch.setenv("CORE_STORAGE_OUTAGE_SECONDS", "30")
    opened = storage_module.open_storage(url)
    yield opened
    opened.engine.dispose()


def fail_once(engine, statement_start: str, error: Exception) -> list:
    """Raise `error` from the driver the first time a statement starting so runs; the list counts the tries."""
    seen = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(statement_start):
            seen.append(statement)
            if len(seen) == 1:
                raise error
    sqlalchemy.event.listen(engine, "before_cursor_execute", before)
    return seen


def no_outage_logged(caplog) -> bool:
    return not any("does not answer" in record.getMessage() for record in caplog.records)


def test_a_deadlock_is_tried_again_at_once_and_succeeds(storage, caplog):
    caplog.set_level(logging.INFO)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "deadlock")
    tries = fail_once(storage.engine, "INSERT INTO STUDY_USER_ATTRIBUTES",
                      psycopg.errors.DeadlockDetected("deadlock detected"))
    started = time.monotonic()
    storage.set_study_user_attr(study_id, "key", "value")
    assert time.monotonic() - started < 0.4  # at once, not after the outage backoff's first pause
    assert len(tries) == 2 and storage.get_study_user_attrs(study_id) == {"key": "value"}
    assert no_outage_logged(caplog)


def test_an_error_the_server_answered_goes_through_as_itself_at_once(storage, url):
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "locked")
    impatient = storage_module.ServerStorage(url, engine_kwargs={"connect_args": {"options": "-c lock_timeout=200"}})
    holder = sqlalchemy.create_engine(url).connect()
    holder.execute(sqlalchemy.text("LOCK TABLE studies IN ACCESS EXCLUSIVE MODE"))
    started = time.monotonic()
    try:
        with pytest.raises(Exception) as raised:
            impatient.set_study_user_attr(study_id, "key", "value")
    finally:
        holder.rollback()
        holder.close()
        impatient.engine.dispose()
    assert time.monotonic() - started < 5  # the window is 30 s: it was not waited out
    assert not isinstance(raised.value, OutageError)
    assert backoff.first_line(raised.value) == "canceling statement due to lock timeout"


def lose_the_answer_once(storage_object) -> list:
    """The next commit reaches the server, and then the connection is reported lost (its answer never came)."""
    lost = []

    def after_commit(session):
        if not lost:
            lost.append(session)
            raise sqlalchemy.exc.OperationalError(
                "COMMIT", None, psycopg.OperationalError("server closed the connection unexpectedly"))
    sqlalchemy.event.listen(storage_object.scoped_session, "after_commit", after_commit)
    return lost


def test_a_create_whose_answer_is_lost_is_made_once(storage):
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "lost")
    lost = lose_the_answer_once(storage)
    trial_id = storage.create_new_trial(study_id)
    assert lost, "the hook never ran"
    assert [t._trial_id for t in storage.get_all_trials(study_id)] == [trial_id]

    lost.clear()
    study = optuna.load_study(study_name="lost", storage=storage)  # Study.ask: through Optuna's cached storage
    assert study.ask().number == 1 and lost
    assert len(storage.get_all_trials(study_id)) == 2


def test_a_study_create_whose_answer_is_lost_returns_the_study(storage):
    lost = lose_the_answer_once(storage)
    study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "made")  # no DuplicatedStudyError
    assert lost and storage.get_study_id_from_name("made") == study_id
    assert len(storage.get_all_studies()) == 1


def test_the_stale_trial_sweep_waits_out_a_short_restart(cluster, url, monkeypatch):
    monkeypatch.setenv("CORE_STORAGE_OUTAGE_SECONDS", "60")
    monkeypatch.setenv("CORE_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("CORE_HEARTBEAT_GRACE_SECONDS", "1")
    opened = storage_module.open_storage(url)
    study = optuna.create_study(study_name="sweep", storage=opened)
    trial = study.ask()
    opened.record_heartbeat(trial._trial_id)
    time.sleep(2.5)  # its heartbeat is past the grace period
    cluster.stop()
    threading.Timer(3, cluster.start).start()
    try:
        runner.fail_stale_trials(study, url)  # reaches RDBStorage._get_stale_trial_ids first
    finally:
        while not cluster.running():
            time.sleep(0.2)
    states = [t.state for t in optuna.load_study(study_name="sweep", storage=url).trials]
    assert states[0] == optuna.trial.TrialState.FAIL, states
    opened.engine.dispose()
