"""Waiting out an MLflow tracking server that stops answering, for a while (core/backoff.py does the waiting).

A call to the store that fails because the server does not answer (connection
refused or reset, a timeout, a 5xx after MLflow's own few retries) is tried
again with backoff for up to CORE_TRACKING_OUTAGE_SECONDS (default 300) from
the first failure; then it raises `OutageError`, one line naming the server.
Errors of any other kind (a bad value, a missing run, SQLite) are raised at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from core import backoff
from core.errors import OutageError, cause_where

WINDOW_VARIABLE = "CORE_TRACKING_OUTAGE_SECONDS"
DEFAULT_WINDOW = 300.0

# MLflow retries each HTTP request itself (7 times with factor 2 by default: about 4 minutes), which would
# hide the window; a few quick tries of its own, then ours, so that the window is what the user set.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

T = TypeVar("T")


def server(uri: str) -> backoff.Server:
    return backoff.Server(f"tracking server {uri}", WINDOW_VARIABLE, DEFAULT_WINDOW, is_outage,
                          "finished trials are kept: start the server and run the same command again")


def window() -> float:
    """Seconds an outage is waited out (CORE_TRACKING_OUTAGE_SECONDS; a bad value is a UserError)."""
    return backoff.seconds(WINDOW_VARIABLE, DEFAULT_WINDOW)


def is_outage(error: BaseException) -> bool:
    """True when `error` says the server did not answer (not that it refused what we sent)."""
    import requests

    # MLflow wraps requests' error in its own; RetryError: a 5xx (or 429) after MLflow's own tries
    down = (requests.ConnectionError, requests.Timeout, requests.exceptions.RetryError)
    return cause_where(error, lambda cause: isinstance(cause, down)) is not None


def patiently(call: Callable[[], T], uri: str, what: str) -> T:
    """`call()`, tried again while the server at `uri` does not answer, for up to the window."""
    return backoff.patiently(call, server(uri), what)


def declared() -> OutageError | None:
    """The outage this process gave up on, if any."""
    return backoff.given_up(WINDOW_VARIABLE)
