"""A bounded queue drained by one low-priority daemon thread, so sending does not slow training.

Items are handed to `send(batch)` in arrival order, many at a time. When the
queue is full, either the oldest item is dropped and counted (a live view), or
`put` waits for room (a durable record, which must lose nothing). If `send`
raises, the error is logged once (an OutageError is left to the owner, which raises
it) and later items are dropped (the run goes on untracked); a `send` may itself
wait and try again (the MLflow sink waits out a tracking server's outage), while
items keep gathering in the queue.

The thread runs at the lowest CPU priority (Linux): torch's threads keep every
core while they train, and the sender catches up whenever training waits.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from core.errors import OutageError

log = logging.getLogger(__name__)


class BackgroundSender:
    def __init__(self, send: Callable[[list[Any]], None], name: str, max_items: int = 100_000,
                 min_interval: float = 0.0, drop_when_full: bool = True):
        self._send = send
        self._name = name
        self._items: collections.deque[Any] = collections.deque()
        self._max_items = max_items
        self._drop_when_full = drop_when_full
        self._min_interval = min_interval  # seconds items may wait: batches more, asks less of a server
        self._lock = threading.Condition()
        self._closed = False
        self._busy = False
        self._flushing = False  # a flush cuts the pause between sends short
        self.dropped = 0
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=f"send-{name}", daemon=True)
        self._thread.start()

    def put(self, *items: Any) -> None:
        with self._lock:
            if not self._drop_when_full:
                # Wait for room: training slows down rather than lose a value of the record.
                self._lock.wait_for(lambda: len(self._items) < self._max_items or self.failed is not None
                                    or self._closed or not self._thread.is_alive())
            if self._closed or self.failed is not None:
                self.dropped += len(items)
                return
            for item in items:
                if len(self._items) >= self._max_items and self._drop_when_full:
                    self._items.popleft()
                    self.dropped += 1
                self._items.append(item)
            self._lock.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued so far is sent (or given up on: see `failed`); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flushing = True
            self._lock.notify_all()
            try:
                while self._items or self._busy:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._thread.is_alive():
                        return False
                    self._lock.wait(remaining)
            finally:
                self._flushing = False
        return True

    def close(self, timeout: float = 30.0) -> bool:
        done = self.flush(timeout)
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        if self.dropped and not isinstance(self.failed, OutageError):  # an outage: one line, the owner's
            log.warning("%s: %d items were not sent (queue full or sender failed)", self._name, self.dropped)
        return done

    def _loop(self) -> None:
        _lower_priority()
        while True:
            with self._lock:
                while not self._items and not self._closed:
                    self._lock.wait()
                if not self._items and self._closed:
                    return
                if self._min_interval and not (self._closed or self._flushing):
                    # Let more items gather: fewer, larger sends (unless someone waits for them).
                    self._lock.wait_for(lambda: self._closed or self._flushing, timeout=self._min_interval)
                batch = list(self._items)
                self._items.clear()
                self._busy = True
            try:
                if self.failed is None:
                    self._send(batch)
                else:
                    self.dropped += len(batch)  # queued before the failure was known
            except Exception as error:  # a tracking server must never break training
                self.failed = error
                self.dropped += len(batch)
                if not isinstance(error, OutageError):  # an outage: the owner raises it, the CLI says it in one line
                    log.warning("%s: sending failed, later values are dropped: %s", self._name, error)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()


def _lower_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19); Linux sets it per thread."""
    if not sys.platform.startswith("linux"):
        return  # elsewhere setpriority would lower the whole process, training included
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except OSError:
        pass  # not allowed here: the thread keeps the normal priority
