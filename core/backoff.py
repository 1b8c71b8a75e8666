"""Waiting out a server that stops answering for a while: backoff within a window, then one OutageError line.

Serves the MLflow tracking server (core/tracking/outage.py) and the database server under Optuna's storage
(core/study/storage.py). Each names itself in a `Server`: how long it is waited for (an environment variable)
and which errors say it is down; any other error goes through at once. Once this process gave up on a kind of
server, later calls to it are tried once: the command is ending, and its clean-up must not wait a window again.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from core.errors import OutageError, UserError

log = logging.getLogger(__name__)

FIRST_PAUSE, LONGEST_PAUSE = 0.5, 10.0  # seconds between tries: doubling from the first up to the longest
T = TypeVar("T")


def seconds(variable: str, default: float) -> float:
    """A number of seconds above 0 from the environment variable, else `default`; a bad one is a UserError."""
    text = os.environ.get(variable, "")
    try:
        value = float(text) if text.strip() else default
    except ValueError:
        value = -1
    if not value > 0:
        raise UserError(f"{variable}={text!r}: give a number of seconds above 0")
    return value


@dataclass(frozen=True)
class Server:
    name: str  # as the error line names it: "tracking server http://..."
    window_variable: str  # the environment variable that sets the seconds it is waited for
    default_window: float
    is_down: Callable[[BaseException], bool]  # the error says it did not answer (not that it refused a request)
    advice: str  # what to do once it stayed down longer than the window

    def window(self) -> float:
        return seconds(self.window_variable, self.default_window)


_given_up: dict[str, OutageError] = {}  # window variable (a kind of server) -> the outage this process gave up on


def patiently(call: Callable[[], T], server: Server, what: str) -> T:
    """`call()`, tried again while `server` does not answer, for up to its window from the first failure."""
    started, pause, warned = time.monotonic(), FIRST_PAUSE, False
    while True:
        try:
            result = call()
        except Exception as error:
            if not server.is_down(error):
                raise
            waited = time.monotonic() - started
            if server.window_variable in _given_up or waited >= server.window():
                raise give_up(server, what) from None
            if not warned:
                log.warning("%s does not answer (%s: %s); waiting up to %.0f s for it",
                            server.name, what, first_line(error), server.window())
                warned = True
            time.sleep(min(pause, max(0.0, server.window() - waited)))
            pause = min(pause * 2, LONGEST_PAUSE)
            continue
        if warned:
            log.warning("%s answers again after %.0f s", server.name, time.monotonic() - started)
        return result


def give_up(server: Server, what: str) -> OutageError:
    """The one-line error for an outage longer than the window (the first one this process declared)."""
    if server.window_variable not in _given_up:
        outage = OutageError(f"{server.name} did not answer for {server.window():.0f} s or more (while {what}; "
                             f"{server.window_variable} sets how long is waited); {server.advice}")
        mark_given_up(server.window_variable, outage)
    return _given_up[server.window_variable]


def mark_given_up(window_variable: str, outage: OutageError) -> OutageError:
    """Record that this process gave up on that kind of server (or a study's worker did: then this process's
    clean-up tries once too, instead of waiting another window)."""
    _given_up.setdefault(window_variable, outage)
    outage.window_variable = window_variable
    return outage


def given_up(window_variable: str) -> OutageError | None:
    """The outage of that kind of server this process gave up on, if any."""
    return _given_up.get(window_variable)


def first_line(error: BaseException) -> str:
    while error.__cause__ is not None:  # a wrapper (Optuna's StorageInternalError) says less than the cause
        error = error.__cause__
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
