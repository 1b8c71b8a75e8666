"""A lock on a folder, for the few steps two processes must not do at once (creating a store's tables)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def folder_lock(path: Path) -> Iterator[None]:
    """An flock on a folder (no file is made; the kernel drops it if the process dies).

    Two commands starting at once on a new SQLite store would both create its tables ("table ... already
    exists"): the first creates them holding this lock on the store's folder, the other waits and finds them."""
    folder = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # closing drops the lock
