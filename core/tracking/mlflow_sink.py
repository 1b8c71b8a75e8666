"""`MLflowTracker`: the durable record of one run.

Metrics go through a background thread in `log_batch` calls of up to 1000
values, never one call per step. Params, tags and artifacts are written at once.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from core.tracking import mlflow_store
from core.tracking.background import BackgroundSender

MAX_METRICS_PER_BATCH = 1000  # MLflow's limit for one log_batch
MAX_PARAMS_PER_BATCH = 100
MODEL_METRIC_PREFIXES = ("final_", "test_")  # what a logged model is ranked by

# Pickle is MLflow's fast format; our own `model/state_dict.pt` is the safe one (weights only).
logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)


class MLflowTracker:
    def __init__(self, run_id: str, experiment: str, mlflow_model: bool = True):
        from mlflow.entities import Metric, Param, RunTag

        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.run_id = run_id
        self.experiment = experiment
        self.mlflow_model = mlflow_model  # log_model: also the model in MLflow's format, or the weights alone
        self.client = mlflow_store.client()
        # At most one metrics write a second: parallel workers share one SQLite write lock.
        # The record loses nothing: when the queue is full, training waits for the sender.
        self._sender = BackgroundSender(self._send_metrics, name=f"mlflow run {run_id[:8]}", min_interval=1.0,
                                        drop_when_full=False)

    # ---- metrics: queued ------------------------------------------------------
    # Plain tuples (key, value, timestamp, step) are queued; the sender thread makes MLflow's objects.
    def log_steps(self, key: str, values: Sequence[float], first_step: int) -> None:
        now = int(time.time() * 1000)
        self._sender.put(*((key, v, now, first_step + i) for i, v in enumerate(values)))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self._sender.put(*((k, v, now, step) for k, v in metrics.items()))

    def _send_metrics(self, points: list[tuple[str, float, int, int]]) -> None:
        metrics = [self._Metric(key, float(value), timestamp, step) for key, value, timestamp, step in points]
        for start in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + MAX_METRICS_PER_BATCH])

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

    def log_model(self, model: torch.nn.Module, input_example: torch.Tensor) -> None:
        """The weights for safe reloading (`weights/state_dict.pt`) and, unless switched off, the model in
        MLflow's format."""
        model = _cpu_copy(model)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "state_dict.pt"
            torch.save(model.state_dict(), path)
            self.client.log_artifact(self.run_id, str(path), artifact_path="weights")
        if self.mlflow_model:
            self._log_mlflow_model(model, input_example)

    def log_mlflow_model(self, model: torch.nn.Module, input_example: torch.Tensor) -> None:
        """The model in MLflow's format, with signature and input example (the Models tab, `mlflow.pytorch`)."""
        self._log_mlflow_model(_cpu_copy(model), input_example)

    def _log_mlflow_model(self, model: torch.nn.Module, input_example: torch.Tensor) -> None:
        """As log_mlflow_model, for a model already copied to the CPU in eval mode."""
        import mlflow
        from mlflow.models import infer_signature

        example = input_example.detach().cpu().float().numpy()
        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
        self._sender.flush()  # the summary metrics may still be queued
        summary = self.client.get_run(self.run_id).data.metrics
        mlflow.set_experiment(experiment_id=mlflow_store.experiment_id(self.experiment))  # where the model is filed
        # MLflow links the run's metrics at the model's step to the model. Its step is the number of optimizer
        # steps taken, where the run has no metric (steps and epochs both count from 0), so only the summary
        # below is linked, not the first epoch's or a single batch's values.
        info = mlflow.pytorch.log_model(model, name="model", run_id=self.run_id,
                                        step=int(summary.get("steps_run", 0)),
                                        signature=infer_signature(example, output), input_example=example,
                                        serialization_format="pickle",
                                        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
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
        self._sender.close()


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    copied = copy.deepcopy(model).cpu().float().eval()
    return copied.to(memory_format=torch.contiguous_format)
