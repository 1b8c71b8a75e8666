"""Decode once per machine: a data set read from files, kept as memory-mapped arrays under the store.

An image folder (and the built-in sets read from files, and an npy set whose test part must be cut out) is
decoded once into `<store>/cache/<key>/`: `train_x.npy`, `train_y.npy`, `test_x.npy`, `test_y.npy` and
`meta.json`. Every later trial, worker and command maps those files (milliseconds; the pages are the kernel's
page cache, shared by every process) instead of decoding again. The key is a hash of what was read: the set's
name, its files' paths, sizes and modification times, and the settings that shape it, so a changed file is a
new key. A build writes under a temporary name and renames the folder only when complete, holding a lock on
the key, so two workers or two commands never build it twice and a killed build leaves nothing that is used.
An entry is checked when opened (its meta, every file's size, dtype and shape); a damaged one is removed and
built again. A full disk while caching is an OutageError naming where (exit 3).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from core import disk
from core.errors import OutageError, UserError
from core.store_dir import make_folder, store_dir

log = logging.getLogger(__name__)

VERSION = 1  # of the layout: a new one is a new key
PARTS = ("train_x", "train_y", "test_x", "test_y")
Arrays = dict[str, np.ndarray]
# fills the folder it is given with the four parts as .npy files; returns the data's fingerprint
Build = Callable[[Path], str]


def cache_root() -> Path:
    return store_dir() / "cache"


def key_of(*parts: object) -> str:
    """The entry's name: a hash of everything that decides its contents."""
    return hashlib.sha256(repr((VERSION, *parts)).encode()).hexdigest()[:20]


def cached(key: str, what: str, build: Build) -> tuple[Arrays, str]:
    """The entry `key` memory-mapped (its arrays and fingerprint), built by `build` first when it is missing or
    damaged. `what` names the set in the line that says a build happened."""
    folder = cache_root() / key
    found = _open(folder)
    if found is not None:
        return found
    created = [path for path in (store_dir(), cache_root()) if not path.exists()]
    make_folder(cache_root())
    lock = cache_root() / f"{key}.lock"
    try:
        with _key_lock(lock):
            found = _open(folder)  # another process may have built it while this one waited
            if found is None:
                _build(folder, what, build)
                found = _open(folder)
    except UserError:  # bad input (a missing or undecodable file) leaves no trace: nothing was cached
        _remove_unused(lock, created)
        raise
    if found is None:
        raise OSError(f"the cache {folder} was built but cannot be read back")
    return found


def _remove_unused(lock: Path, created: list[Path]) -> None:
    """The key's lock file, and the folders this call created when they are empty again. Safe against a process
    waiting on the same key: its files are the same (the key says so), so it fails the same way."""
    lock.unlink(missing_ok=True)
    for folder in reversed(created):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _build(folder: Path, what: str, build: Build) -> None:
    if folder.exists():
        shutil.rmtree(folder)  # damaged (the reason was logged when it was opened)
    for stale in folder.parent.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)  # a build that was killed (we hold the key's lock)
    staging = folder.parent / f".{folder.name}.{os.getpid()}"
    started = time.perf_counter()
    try:
        staging.mkdir()
        fingerprint = build(staging)
        _write_meta(staging, what, fingerprint)
        os.rename(staging, folder)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        full = disk.full_disk(error)
        if full is not None:
            raise OutageError(disk.message(getattr(full, "filename", None) or staging)) from None
        raise
    size = sum(path.stat().st_size for path in folder.iterdir())
    log.info("data: decoded %s once into the cache %s (%.1f MiB, %.1f s); later runs map it (remove the folder "
                "to rebuild it)", what, folder, size / 2**20, time.perf_counter() - started)


def _write_meta(folder: Path, what: str, fingerprint: str) -> None:
    files = {}
    for part in PARTS:
        array = np.load(folder / f"{part}.npy", mmap_mode="r")
        files[part] = {"bytes": (folder / f"{part}.npy").stat().st_size, "dtype": str(array.dtype),
                       "shape": list(array.shape)}
        del array
    meta = {"version": VERSION, "what": what, "fingerprint": fingerprint, "files": files}
    with open(folder / "meta.json", "w") as handle:
        json.dump(meta, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    for part in PARTS:  # the data on disk before the rename makes the entry visible
        with open(folder / f"{part}.npy", "rb") as handle:
            os.fsync(handle.fileno())


def _open(folder: Path) -> tuple[Arrays, str] | None:
    """The entry's arrays (copy-on-write maps: writable tensors without writing the files) and fingerprint; None
    when there is no entry, or it is damaged (logged, so the caller rebuilds it)."""
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = {}
        for part in PARTS:
            expected, path = meta["files"][part], folder / f"{part}.npy"
            if path.stat().st_size != expected["bytes"]:
                raise ValueError(f"{path.name} is {path.stat().st_size} bytes, not {expected['bytes']}")
            array = np.load(path, mmap_mode="c", allow_pickle=False)
            if str(array.dtype) != expected["dtype"] or list(array.shape) != expected["shape"]:
                raise ValueError(f"{path.name} holds {array.dtype} {list(array.shape)}, not {expected}")
            arrays[part] = array
        return arrays, str(meta["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError) as damage:
        log.warning("data: the cache %s is damaged (%s); rebuilding it", folder, damage)
        return None


@contextlib.contextmanager
def _key_lock(path: Path) -> Iterator[None]:
    """An flock on the key's lock file: the kernel drops it when the holder dies, so a killed build blocks
    nobody."""
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def new_array(folder: Path, part: str, dtype: np.dtype | type, shape: tuple[int, ...]) -> np.memmap:
    """An .npy file of `shape` in the staging folder, its space allocated now: a full disk is an error here, not
    a SIGBUS when a page of the map is written later."""
    path = folder / f"{part}.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    handle = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(handle, 0, path.stat().st_size)
    except OSError as error:
        raise disk.with_filename(error, path) from None
    finally:
        os.close(handle)
    return array

