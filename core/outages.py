"""An outage, in one place: what counts as one, and what is done about it.

An outage is a correct command stopped by what is around it: a server that stayed down past its window
(`core/backoff.py` waits; `tracking/outage.py` and `study/storage.py` say which errors mean their server
does not answer) or a full disk (`core/disk.py` tells it). Every other module asks `outage_behind(error)`
("is there an outage behind this error?") and nothing else, so there is one spelling of the check:
- `outage_behind` gives up the store's disk reserve on a full disk (room to close the open runs) and
  returns one `OutageError` naming where, or None;
- `raise_outage_behind` raises it; a caller that keeps going after other errors calls it first;
- `best_effort` wraps a step the result stands without (a plot, a note, the best model): any error is a
  warning, an outage goes through (exit 3, never a study that ends "well" with a step missing).
Torch-free and MLflow-free: the store tells `guard_store` where its reserve and database are.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from core import disk
from core.errors import OutageError

log = logging.getLogger(__name__)

_guarded: dict[Path, Path | None] = {}  # the store folders whose reserve this process kept -> their database


def guard_store(folder: Path, database: Path | None = None) -> None:
    """Keep the disk reserve of a store folder (written if missing), and remember it for a full disk."""
    disk.keep_reserve(folder)
    _guarded[Path(folder).resolve()] = database


def outage_behind(error: BaseException | None) -> OutageError | None:
    """The OutageError behind `error`: itself, or one for a full disk (naming where, after giving up the
    reserves so the caller can still close its runs); None when `error` is no outage."""
    found = disk.full_disk(error)
    if found is None:
        return error if isinstance(error, OutageError) else None
    for folder in _guarded:
        disk.give_up_reserve(folder)
    if isinstance(error, OutageError):
        return error
    return OutageError(disk.message(_where(found)))


def _where(found: BaseException) -> Path | str:
    path = getattr(found, "filename", None)
    if path:
        return Path(path).resolve()
    databases = [database for database in _guarded.values() if database is not None]
    if databases and "database or disk is full" in str(found):  # SQLite says which file only by being it
        return databases[0].resolve()
    folders = list(_guarded)
    return f"under {folders[0]}" if folders else "on this machine's disk"


def raise_outage_behind(error: BaseException) -> None:
    """Raise the OutageError behind `error` (itself, or a full disk's, naming where), if there is one."""
    stopped = outage_behind(error)
    if stopped is error:
        raise error
    if stopped is not None:
        raise stopped from error


@contextlib.contextmanager
def best_effort(what: str) -> Iterator[None]:
    """A step the result stands without: its error is a warning naming `what`, but an outage goes through."""
    try:
        yield
    except Exception as error:
        raise_outage_behind(error)
        log.warning("%s: %s", what, error)


def tracking_server_gave_up(stopped: OutageError) -> bool:
    """The outage is the tracking server's (Optuna's storage still answers: a cut-off trial can be told)."""
    from core.tracking import outage as tracking_server

    return tracking_server.declared() is stopped
