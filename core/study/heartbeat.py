"""The heartbeat of a running trial on an RDB storage (SQLite, PostgreSQL), recorded by a thread of its own.

Optuna records heartbeats only inside `Study.optimize`; our loop asks and tells, so it records them itself,
through the storage's public `record_heartbeat(trial_id)`. A trial whose worker stops beating for the grace
period (a machine that died, a kill -9 on another host) is failed by the next worker that sweeps the study
(`optuna.storages.fail_stale_trials`), and its parameters retried once (storage.RetryStaleTrial).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from optuna.storages import BaseStorage, RDBStorage

log = logging.getLogger(__name__)


@contextlib.contextmanager
def beating(storage: BaseStorage, study_name: str, trial_number: int) -> Iterator[None]:
    """Record the trial's heartbeat now and every heartbeat interval while inside; stopped on any exit
    (an exception, Ctrl-C, SIGTERM). A storage without heartbeats (the journal file) records nothing."""
    interval = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
    if interval is None:
        yield
        return
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name),
                                                                trial_number)
    storage.record_heartbeat(trial_id)  # the first beat before the trial trains: a kill at once is seen too
    stop = threading.Event()
    thread = threading.Thread(target=_beat, args=(storage, trial_id, interval, stop), daemon=True,
                              name=f"heartbeat-trial-{trial_number}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(interval + 5)


def _beat(storage: RDBStorage, trial_id: int, interval: int, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            storage.record_heartbeat(trial_id)
        except Exception as error:  # the storage is down: the trial's own calls wait for it or end the study
            log.warning("heartbeat of trial id %d not recorded: %s", trial_id, str(error).splitlines()[0])
