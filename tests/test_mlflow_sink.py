"""The MLflow sink under parallel writers."""

from __future__ import annotations

import threading

from core.tracking import mlflow_store
from core.tracking.mlflow_sink import MLflowTracker
from tests.helpers import start_run


def log_at_once(trackers: list[MLflowTracker], digest: str) -> list[Exception]:
    """Every tracker logs the same data set at the same moment, each from its own thread; returns the errors."""
    start = threading.Barrier(len(trackers))
    errors: list[Exception] = []

    def log(tracker: MLflowTracker) -> None:
        start.wait()
        try:
            tracker.log_dataset("synthetic", digest, "nowhere", {"samples": 1})
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=log, args=(tracker,)) for tracker in trackers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_workers_logging_the_same_data_set_at_once_all_get_it():
    # Parallel trials start together and log the same data set: MLflow's look-up-then-insert races.
    trackers = [MLflowTracker(start_run("race", f"run {i}"), "race") for i in range(6)]
    for round_ in range(5):
        errors = log_at_once(trackers, f"digest{round_}")
        assert not errors, errors
    client = mlflow_store.client()
    for tracker in trackers:
        digests = {i.dataset.digest for i in client.get_run(tracker.run_id).inputs.dataset_inputs}
        assert digests == {f"digest{r}" for r in range(5)}
        tracker.close()
