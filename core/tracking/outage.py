"""Waiting out an MLflow tracking server that stops answering, for a while.

A call to the store that fails because the server does not answer (connection
refused or reset, a timeout, a 5xx after MLflow's own few retries) is tried
again with backoff for up to CORE_TRACKING_OUTAGE_SECONDS (default 300) from
the first failure; then it raises `OutageError`, one line naming the server.
Once an outage was declared in this process, later calls are tried once: the
command is ending and its clean-up must not wait a whole window again.

Errors of any other kind (a bad value, a missing run, SQLite) are raised at once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from core.errors import OutageError

log = logging.getLogger(__name__)

WINDOW_VARIABLE = "CORE_TRACKING_OUTAGE_SECONDS"
DEFAULT_WINDOW = 300.0
FIRST_PAUSE, LONGEST_PAUSE = 0.5, 10.0  # seconds between tries: doubling from the first up to the longest

# MLflow retries each HTTP request itself (7 times with factor 2 by default: about 4 minutes), which would
# hide the window; a few quick tries of its own, then ours, so that the window is what the user set.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

T = TypeVar("T")
_declared: list[OutageError] = []  # the outage this process gave up on, if any


def window() -> float:
    """Seconds an outage is waited out (CORE_TRACKING_OUTAGE_SECONDS)."""
    text = os.environ.get(WINDOW_VARIABLE, "")
    try:
        return max(0.0, float(text)) if text.strip() else DEFAULT_WINDOW
    except ValueError:
        log.warning("%s=%r is not a number of seconds: %.0f s is used", WINDOW_VARIABLE, text, DEFAULT_WINDOW)
        return DEFAULT_WINDOW


def is_outage(error: BaseException) -> bool:
    """True when `error` says the server did not answer (not that it refused what we sent)."""
    import requests

    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:  # MLflow wraps requests' error in its own
        if isinstance(cause, (requests.ConnectionError, requests.Timeout)):
            return True
        if isinstance(cause, requests.exceptions.RetryError):  # 5xx (or 429) after MLflow's tries
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def patiently(call: Callable[[], T], uri: str, what: str) -> T:
    """`call()`, tried again while the server at `uri` does not answer, for up to the window."""
    started, pause, warned = time.monotonic(), FIRST_PAUSE, False
    while True:
        try:
            result = call()
        except Exception as error:
            if not is_outage(error):
                raise
            waited = time.monotonic() - started
            if _declared or waited >= window():
                raise declare(uri, what, waited) from None
            if not warned:
                log.warning("tracking server %s does not answer (%s); waiting up to %.0f s for it",
                            uri, what, window())
                warned = True
            time.sleep(min(pause, max(0.0, window() - waited)))
            pause = min(pause * 2, LONGEST_PAUSE)
            continue
        if warned:
            log.warning("tracking server %s answers again after %.0f s", uri, time.monotonic() - started)
        return result


def declare(uri: str, what: str, waited: float) -> OutageError:
    """The one-line error for an outage longer than the window; later calls of this process are tried once."""
    outage = _declared[0] if _declared else OutageError(
        f"tracking server {uri} did not answer for {waited:.0f} s (while {what}); finished trials are kept: "
        f"start the server and run the same command again (outages up to {WINDOW_VARIABLE}={window():.0f} s "
        f"are waited out)")
    if not _declared:
        _declared.append(outage)
    return outage


def declared() -> OutageError | None:
    """The outage this process gave up on, if any."""
    return _declared[0] if _declared else None
