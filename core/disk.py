"""A full disk: telling it from other errors, naming where, and a reserve that makes room to close runs.

A full disk shows up as an `OSError` (ENOSPC, EDQUOT), often without a file name (a checkpoint, an artifact
copy, a journal append), or as SQLite's "database or disk is full" inside MLflow's errors. Once the disk is
full, SQLite cannot even mark a run FAILED, so a SQLite store keeps a small file of its own beside its
database (`.space-reserve`, 1 MiB): the first full-disk error gives it up, the open runs are closed in the
room it leaves, and the next command writes it again (or stops at once while the disk is still full).
Torch-free and MLflow-free: `tracking.mlflow_store` decides where the store is.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from core.errors import cause_where

RESERVE_NAME = ".space-reserve"
RESERVE_BYTES = 1 << 20  # closing a trial's run and the parent run in SQLite's WAL takes a few pages
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
FULL_TEXTS = ("database or disk is full", "No space left on device", "Disk quota exceeded")


def full_disk(error: BaseException | None) -> BaseException | None:
    """The error behind `error` (itself, or what caused it or was being handled) that says a disk is full."""
    return cause_where(error, _says_full)


def _says_full(error: BaseException) -> bool:
    return (isinstance(error, OSError) and error.errno in FULL_ERRNOS) or any(text in str(error) for text in FULL_TEXTS)


def message(path: Path | str) -> str:
    return f"no space left on device writing {path}: free space and run the same command again"


def keep_reserve(folder: Path) -> None:
    """Write the reserve in `folder` if it is missing; on a full disk an OSError naming it (nothing half-kept)."""
    path = Path(folder) / RESERVE_NAME
    if path.is_file() and path.stat().st_size >= RESERVE_BYTES:
        return
    try:
        with open(path, "wb") as handle:
            handle.write(os.urandom(RESERVE_BYTES))  # random: a compressing file system would keep zeros in nothing
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        path.unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror, str(path.resolve())) from None


def give_up_reserve(folder: Path) -> bool:
    """Delete the reserve in `folder` (room to close runs on a full disk); False when there was none."""
    try:
        (Path(folder) / RESERVE_NAME).unlink()
    except FileNotFoundError:
        return False
    return True


def with_filename(error: OSError, path: Path) -> OSError:
    """`error` naming `path` when it names no file (a write to an open file names none)."""
    if error.filename:
        return error
    return OSError(error.errno, error.strerror, str(Path(path).resolve()))
