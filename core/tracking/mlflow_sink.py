"""`MLflowTracker`: the durable record of one run.

Metrics go through a background thread in `log_batch` calls of up to 1000
values, never one call per step. Params, tags and artifacts are written at once.
A tracking server that stops answering is waited out (core/tracking/outage.py):
the sender holds the values meanwhile and delivers them when it is back. If it
stays down longer than the window, the next call raises `OutageError`, so a run
never ends as if its values had all been recorded.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from core import outages
from core.errors import OutageError
from core.names import SUMMARY_PREFIX, logged_summary
from core.tracking import mlflow_store, outage
from core.tracking.background import BackgroundSender

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch
MAX_PARAMS_PER_BATCH = 100
# What a logged model is ranked by: the run's summary values (summary/final_*, summary/test_*; unprefixed in runs
# logged before the prefix).
MODEL_METRIC_PREFIXES = tuple(f"{summary}{kind}" for summary in (SUMMARY_PREFIX, "") for kind in ("final_", "test_"))
FLUSH_MARGIN = 120.0  # seconds a flush waits beyond the outage window: the last requests themselves

# Pickle is MLflow's fast format; our own `weights/state_dict.pt` is the safe one (weights only).
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)


class MLflowTracker:
    def __init__(self, run_id: str, experiment: str):
        from mlflow.entities import Metric, Param, RunTag

        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.run_id = run_id
        self.experiment = experiment
        self.client = mlflow_store.client()
        # At most one metrics write a second: parallel workers share one SQLite write lock.
        # The record loses nothing: when the queue is full, training waits for the sender.
        self._sender = BackgroundSender(self._send_metrics, name=f"mlflow run {run_id[:8]}", min_interval=1.0,
                                        drop_when_full=False)

    # ---- metrics: queued ------------------------------------------------------
    # Plain tuples (key, value, timestamp, step) are queued; the sender thread makes MLflow's objects.
    def log_steps(self, key: str, values: Sequence[float], first_step: int) -> None:
        self._raise_outage()
        now = int(time.time() * 1000)
        self._sender.put(*((key, v, now, first_step + i) for i, v in enumerate(values)))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._raise_outage()
        now = int(time.time() * 1000)
        self._sender.put(*((k, v, now, step) for k, v in metrics.items()))

    def _raise_outage(self) -> None:
        """Values the sender gave up on are lost to this run: training it on would be for nothing."""
        if isinstance(self._sender.failed, OutageError):
            raise self._sender.failed

    def flush(self) -> None:
        """Wait until every queued value is recorded, through an outage up to the window; else OutageError."""
        self._delivered(self._sender.flush(timeout=outage.window() + FLUSH_MARGIN))

    def _delivered(self, in_time: bool) -> None:
        """Values the sender gave up on, or could not send in time (a server that hangs instead of refusing),
        are missing from this run: an OutageError, so the run does not end as if complete."""
        self._raise_outage()
        if not in_time:
            raise OutageError(f"tracking store {mlflow_store.tracking_uri()}: run {self.run_id} still had values "
                              f"to record after {outage.window() + FLUSH_MARGIN:.0f} s; run the same command again")

    def _send_metrics(self, points: list[tuple[str, float, int, int]]) -> None:
        metrics = [self._Metric(key, float(value), timestamp, step) for key, value, timestamp, step in points]
        try:
            for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])
        except Exception as error:  # the sender keeps it (`failed`), drops later values, and close() raises it
            outages.raise_outage_behind(error)  # a full disk is an outage: the run cannot be complete
            raise

    # ---- everything else: at once -------------------------------------------
    def log_params(self, params: dict[str, Any]) -> None:
        items = [self._Param(k, str(v)) for k, v in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start:start + MAX_PARAMS_PER_BATCH])

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[self._RunTag(k, str(v)) for k, v in tags.items()])

    def log_file(self, path: Path, folder: str = "") -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=folder or None)

    def log_figure(self, figure: Any, filename: str) -> None:
        from matplotlib import pyplot as plt

        self.client.log_figure(self.run_id, figure, filename)
        plt.close(figure)

    def log_text(self, text: str, filename: str) -> None:
        self.client.log_text(self.run_id, text, filename)

    def log_dataset(self, name: str, fingerprint: str, source: str, profile: dict[str, Any]) -> None:
        """The data set as a run input (MLflow's Datasets column), identified by its fingerprint."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException

        dataset = Dataset(name=name, digest=fingerprint, source_type="local", source=json.dumps({"uri": source}),
                          profile=json.dumps(profile))
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])]
        try:
            self.client.log_inputs(self.run_id, inputs)
        except MlflowException:
            # MLflow looks the data set up, then inserts it: a parallel worker logging the same data set in
            # between makes the insert fail on its unique key. The second try finds it and only links it.
            self.client.log_inputs(self.run_id, inputs)

    def log_weights(self, model: torch.nn.Module) -> None:
        """The weights for safe reloading (`weights/state_dict.pt`): what `evaluate` and `reproduce` load."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "state_dict.pt"
            torch.save(_cpu_copy(model).state_dict(), path)
            self.client.log_artifact(self.run_id, str(path), artifact_path="weights")

    def log_mlflow_model(self, model: torch.nn.Module, name: str, example: Any, signature: Any,
                         code_paths: list[str]) -> None:
        """The model in MLflow's format (the Models tab, `mlflow.pytorch`, `mlflow models serve`), named
        `name`, with its signature, input example and the code its pickle needs."""
        import mlflow

        model = _cpu_copy(model)
        self.flush()  # the summary metrics may still be queued
        summary = self.client.get_run(self.run_id).data.metrics
        experiment_id = mlflow_store.experiment_id(self.experiment)
        # MLflow links the run's metrics at the model's step to the model. Its step is the number of optimizer
        # steps taken, where the run has no metric (steps and epochs both count from 0), so only the summary
        # below is linked, not the first epoch's or a single batch's values.

        def log_model():  # MLflow's fluent API, not our client: tried again through an outage here
            mlflow.set_experiment(experiment_id=experiment_id)  # where the model is filed
            return mlflow.pytorch.log_model(model, name=model_name(name), run_id=self.run_id,
                                            step=int(logged_summary(summary, "steps_run") or 0), signature=signature,
                                            input_example=example, serialization_format="pickle",
                                            code_paths=code_paths,
                                            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
        info = outage.patiently(log_model, mlflow_store.tracking_uri(), "logging the model")
        self._log_model_metrics(info.model_id, [key for key in summary if key.startswith(MODEL_METRIC_PREFIXES)])

    def _log_model_metrics(self, model_id: str, keys: list[str]) -> None:
        """The run's summary metrics also on the logged model, so the Models tab can rank models.

        Each is re-sent exactly as the run holds it (same step and timestamp): MLflow files it under the model
        and skips it for the run, whose history stays as it was.
        """
        metrics = []
        for key in keys:
            last = max(self.client.get_metric_history(self.run_id, key), key=lambda m: (m.step, m.timestamp))
            metrics.append(self._Metric(key, last.value, last.timestamp, last.step, model_id=model_id,
                                        run_id=self.run_id))
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        """Send what is queued (waiting out an outage up to the window); OutageError if it could not be."""
        self._delivered(self._sender.close(timeout=outage.window() + FLUSH_MARGIN))


def model_name(name: str) -> str:
    """A run or trial name as a logged model's name: MLflow refuses / : . % and quotes in them."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:100] or "model"


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    copied = copy.deepcopy(model).cpu().float().eval()
    return copied.to(memory_format=torch.contiguous_format)
