"""Waiting out a server that does not answer (core/backoff.py, as core/tracking/outage.py uses it), without one."""

from __future__ import annotations

import time

import pytest
import requests

from core import backoff
from core.errors import OutageError, UserError
from core.tracking import outage
from tests.helpers import free_port

URI = "http://127.0.0.1:1"


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    monkeypatch.setattr(backoff, "_given_up", {})
    monkeypatch.setattr(backoff, "FIRST_PAUSE", 0.05)


def flaky(failures: int, error: Exception):
    calls = []

    def call():
        calls.append(time.monotonic())
        if len(calls) <= failures:
            raise error
        return "done"
    return call, calls


def test_an_outage_shorter_than_the_window_is_waited_out(monkeypatch):
    monkeypatch.setenv(outage.WINDOW_VARIABLE, "30")
    call, calls = flaky(3, requests.ConnectionError("refused"))
    assert outage.patiently(call, URI, "log_batch") == "done"
    assert len(calls) == 4
    assert outage.declared() is None


def test_a_longer_outage_is_one_outage_error_and_later_calls_try_once(monkeypatch):
    monkeypatch.setenv(outage.WINDOW_VARIABLE, "0.3")
    call, calls = flaky(1000, requests.ConnectionError("refused"))
    with pytest.raises(OutageError) as raised:
        outage.patiently(call, URI, "log_batch")
    assert URI in str(raised.value) and "\n" not in str(raised.value)
    assert len(calls) > 1
    call, calls = flaky(1000, requests.ConnectionError("refused"))
    with pytest.raises(OutageError) as again:
        outage.patiently(call, URI, "set_terminated")
    assert len(calls) == 1 and again.value is raised.value


def test_other_errors_are_raised_at_once(monkeypatch):
    monkeypatch.setenv(outage.WINDOW_VARIABLE, "30")
    call, calls = flaky(1, ValueError("bad value"))
    with pytest.raises(ValueError):
        outage.patiently(call, URI, "log_batch")
    assert len(calls) == 1


def test_mlflow_s_error_for_a_server_that_is_not_there_counts_as_an_outage(monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(MlflowException) as raised:
        mlflow.MlflowClient(f"http://127.0.0.1:{free_port()}").get_run("0" * 32)
    assert outage.is_outage(raised.value)
    assert not outage.is_outage(MlflowException("RESOURCE_DOES_NOT_EXIST"))


@pytest.mark.parametrize("text,seconds", [("", outage.DEFAULT_WINDOW), ("12.5", 12.5)])
def test_the_window_comes_from_the_environment(monkeypatch, text, seconds):
    monkeypatch.setenv(outage.WINDOW_VARIABLE, text)
    assert outage.window() == seconds


@pytest.mark.parametrize("text", ["soon", "0", "-3"])
def test_a_bad_window_is_a_user_error_naming_the_variable(monkeypatch, text):
    monkeypatch.setenv(outage.WINDOW_VARIABLE, text)
    with pytest.raises(UserError, match=outage.WINDOW_VARIABLE):
        outage.window()


def test_an_outage_a_worker_gave_up_on_is_tried_once_here(monkeypatch):
    """A study's worker gave up on the server: the main process closes the parent run without another window."""
    monkeypatch.setenv(outage.WINDOW_VARIABLE, "30")
    worker_said = backoff.mark_given_up(outage.WINDOW_VARIABLE, OutageError("tracking server ... did not answer"))
    call, calls = flaky(1000, requests.ConnectionError("refused"))
    with pytest.raises(OutageError) as raised:
        outage.patiently(call, URI, "set_terminated")
    assert len(calls) == 1 and raised.value is worker_said


def test_closing_trackers_closes_every_one_before_raising_the_first_error():
    from core.tracking import CompositeTracker

    closed = []

    class Tracker:
        def __init__(self, name, error=None):
            self.name, self.error = name, error

        def close(self):
            closed.append(self.name)
            if self.error:
                raise self.error

    with pytest.raises(OutageError):
        CompositeTracker(Tracker("mlflow", OutageError("down")), Tracker("visdom")).close()
    assert closed == ["mlflow", "visdom"]
