"""What a training run records: what it is (params, tags, the user's code, the data set, `config.yaml`)
and what came out (summary metrics, why it stopped, figures, the weights, the served model).

Shared by the train command, study trials, comparison folds and reproductions (`core/runs/fit.py`), so
every training run in the store is recorded the same way.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch

from core import names, provenance, report, serving, user_code
from core.config import Config
from core.names import ON_DISK, epoch_key, step_key, summary_key
from core.runs.place import Place
from core.tracking import Tracker, mlflow_store
from core.tracking.mlflow_sink import MLflowTracker
from core.train import FitResult, Prepared, predict, run_label

CODE_TAG = "code."  # code.<path> = the SHA-256 of a user source file the run used
CONFIG_ARTIFACT = "config.yaml"  # the whole flat config: params hold only the keys that apply
# the task, its output width and what it learnt from the training part (regression: the targets' mean and std)
TASK_ARTIFACT = "task.json"


class CurveKeys:
    """The MLflow record as `fit` logs to it: per-epoch values as epoch/<name>, per-step values as step/<name>
    (core/names.py says why); the trainer and Visdom keep the plain names."""

    def __init__(self, record: MLflowTracker):
        self.record = record

    def log_steps(self, key: str, values: list[float], first_step: int) -> None:
        self.record.log_steps(step_key(key), values, first_step)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.record.log_metrics({epoch_key(key): value for key, value in metrics.items()}, step)

    def __getattr__(self, name: str):
        return getattr(self.record, name)  # params, tags, files, close: as they are


@contextlib.contextmanager
def system_metrics(run_id: str, on: bool) -> Iterator[None]:
    """MLflow's own sampler of CPU, memory, disk, network (and GPU, with NVIDIA's library) as the run's
    system/* metrics, every 10 s (MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL sets another interval)."""
    if not on:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, tracking_uri=mlflow_store.tracking_uri())
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def live_metrics(config: Config) -> tuple[str, ...]:
    """Visdom's windows for this run: each run is its own line (the label ends with its run id, so a rerun
    of the same config does not continue the last one's line), and no learning-rate window when the rate
    is constant (a flat line on an axis Visdom stretches to -1..1)."""
    return (*names.epoch_keys(config.task), *(("lr",) if config.sched.name != "none" else ()))


def run_params(config: Config, place: Place) -> dict[str, object]:
    """A run's MLflow params: the config keys that apply to it (`Config.to_params`; the whole config is the
    artifact config.yaml) and where it sits (PLACE_KEYS, from its tags)."""
    return {**config.to_params(), **place.place_params()}


def log_inputs(record: MLflowTracker, prepared: Prepared, place: Place) -> None:
    """What the run is: its params, provenance tags, the user's code, the data set and the whole config as YAML
    (what `reproduce` rebuilds the config from)."""
    config, data = prepared.config, prepared.data
    record.log_params(run_params(config, place))
    record.set_tags(provenance.run_tags(config, data.fingerprint, prepared.device))  # torch_threads: prepare's choice
    if prepared.threads.why:
        record.set_tags({"torch_threads_from": prepared.threads.why})  # train.threads, OMP_NUM_THREADS, small model...
    # where the set trained from (data.in_memory=auto decides per machine): the device, or streamed batches
    record.set_tags({"data_batches": "streamed" if data.streamed else "in memory"})
    log_user_code(record, config)
    record.log_text(report.config_yaml(config), CONFIG_ARTIFACT)
    record.log_dataset(data.name, data.fingerprint, data_source(config),
                       {"train_samples": len(prepared.train_idx) + len(prepared.val_idx),
                        "test_samples": len(prepared.test),
                        "sample_shape": list(data.input_shape), "outputs": prepared.task.outputs})
    record.log_text(json.dumps(prepared.task.record(), indent=1), TASK_ARTIFACT)


def log_user_code(record: MLflowTracker, config: Config) -> None:
    """The user's source files as artifacts under code/, their SHA-256 as tags `code.<path>`, and the git
    commit of the folder they came from (`code_git`, with +dirty): what `reproduce` checks."""
    sources = user_code.sources(config.user_references())
    if not sources:
        return
    tags = {f"{CODE_TAG}{source.relative}": source.sha256 for source in sources}
    record.set_tags({**tags, "code_git": user_code.git_commit(sources[0].path.parent) or "not in git"})
    for source in sources:
        folder = Path("code", source.relative).parent.as_posix()
        record.log_file(source.path, folder)


def data_source(config: Config) -> str:
    """Where the data came from, for MLflow's Datasets column."""
    data = config.data
    if data.name in ("npz", "npy"):
        return str(Path(data.path).resolve())
    if data.name == "image_folder" or data.name in ON_DISK:
        return str(Path(data.root).resolve())
    return data.name if user_code.is_reference(data.name) else f"builtin:{data.name}"


def log_outcome(record: MLflowTracker, prepared: Prepared, result: FitResult, model_name: str) -> None:
    """What came out: summary metrics (under summary/, e.g. summary/test_acc), why training stopped, and (as the
    config asks) figures, the weights and, when `model_name` is given, the model in MLflow's format under that name."""
    config = prepared.config
    if result.metrics:
        compiling = {key: result.extra[key] for key in ("compile_seconds", "compiled_graphs") if key in result.extra}
        record.log_metrics({summary_key(key): value for key, value in {**result.metrics, **compiling}.items()},
                           step=result.epochs_run - 1)
        if config.track.figures:
            log_figures(record, prepared, result)
        if config.track.log_model:
            record.log_weights(result.model)
            if model_name:
                log_served_model(record, prepared, result.model, model_name)
    tags = {"stop_reason": result.stop.reason, "epochs_run": str(result.epochs_run)}
    if result.stop.detail:
        tags["stop_detail"] = result.stop.detail
    record.set_tags(tags)


def log_figures(record: Tracker, prepared: Prepared, result: FitResult) -> None:
    """Learning curves (the loss and the task's main metric), then the task's own figures of the test part."""
    task = prepared.task
    record.log_figure(report.learning_curves(result.history, run_label(prepared.config), task.names.epoch[0]),
                      "learning_curves.png")
    predictions = predict(result.model, prepared.test, prepared.normalize, task).cpu().numpy()
    for filename, figure in task.figures(prepared.test.targets().numpy(), predictions).items():
        record.log_figure(figure, filename)


def log_served_model(record: MLflowTracker, prepared: Prepared, network: torch.nn.Module, name: str) -> None:
    """The model in MLflow's format as it is served: raw inputs, the run's normalisation inside (core.serving)."""
    record.log_mlflow_model(serving.serving_model(prepared, network), name, serving.raw_example(prepared),
                            serving.signature(prepared), serving.code_paths(prepared))
