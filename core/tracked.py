"""One training run recorded in MLflow (and shown live in Visdom when a server answers).

The glue between the trainer and the record: it opens the run, logs what the
run is (params, tags, the data set, `config.yaml`), lets `fit` stream its
per-step and per-epoch values, then logs what came out (summary metrics, the
stop reason, figures, the model). Shared by the train command, study trials and
comparison folds, so every run in the store is recorded the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from core import provenance, report, serving, user_code
from core.config import Config
from core.names import ON_DISK, epoch_key, step_key, summary_key
from core.resume import Resume, checkpoint_file, remove_checkpoints
from core.tracking import CompositeTracker, Tracker, mlflow_store
from core.tracking.mlflow_sink import MLflowTracker
from core.tracking.visdom_sink import LIVE_METRICS, make_visdom_tracker
from core.train import FitResult, Prepared, ShouldStop, fit, predict, prepare, run_label

CODE_TAG = "code."  # code.<path> = the SHA-256 of a user source file the run used
# Tags that say where a run sits (a study's trial, a fold, a comparison's remedy and repeat), logged as params too:
# MLflow's charts take params (not tags) as axes and group keys.
PLACE_KEYS = ("trial_number", "fold", "remedy", "repeat")
CONFIG_ARTIFACT = "config.yaml"  # the whole flat config: params hold only the keys that apply


@dataclass
class TrackedRun:
    run_id: str
    result: FitResult


def tracked_fit(config: Config, *, experiment: str | None = None, run_name: str | None = None,
                parent_run_id: str | None = None, tags: dict[str, str] | None = None,
                should_stop: ShouldStop | None = None, visdom_env: str | None = None,
                visdom_label: str | None = None, progress: bool = False,
                prepared: Prepared | None = None,
                on_run_start: Callable[[str], None] | None = None, mlflow_model: bool = True,
                resume: Resume | None = None) -> TrackedRun:
    """Check the config (data, split, model) first, then open a run and train into it.

    `resume`: go on from another run's checkpoint, in a new run tagged with where it came from (core/resume.py).

    `mlflow_model=False` keeps only the weights of the model (a study logs its best trial's model itself).
    """
    prepared = prepared or prepare(config)
    experiment = experiment or config.track.experiment
    name = run_name or run_label(config)
    tags = {**(tags or {}), **(resume.tags() if resume else {})}
    with mlflow_store.open_run(experiment, name, tags, parent_run_id) as run_id, \
            system_metrics(run_id, config.track.system_metrics):
        if on_run_start is not None:
            on_run_start(run_id)
        record = MLflowTracker(run_id, experiment)
        live = None if config.track.visdom == "off" else make_visdom_tracker(
            config.track.visdom, config.track.visdom_url, visdom_env or experiment,
            f"{visdom_label or name} [{run_id[:6]}]", live_metrics(config))
        with contextlib.closing(CompositeTracker(CurveKeys(record), live)) as tracker:
            log_inputs(record, prepared, tags)
            try:
                result = fit(config, tracker, should_stop=should_stop, progress=progress, prepared=prepared,
                             checkpoint_path=checkpoint_file(run_id) if config.train.checkpoint else None,
                             resume_from=resume.state if resume else None)
            except KeyboardInterrupt:
                mlflow_store.drop_pooled_connections()  # before the last metrics are sent
                raise
            log_outcome(record, prepared, result, name if mlflow_model else "")
    remove_checkpoints(run_id, resume)  # the run is FINISHED; killed or failed runs keep theirs, to be resumed
    return TrackedRun(run_id, result)


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
    return tuple(key for key in LIVE_METRICS if key != "lr" or config.sched.name != "none")


def run_params(config: Config, tags: dict[str, str]) -> dict[str, object]:
    """A run's MLflow params: the config keys that apply to it (`Config.to_params`; the whole config is the
    artifact config.yaml) and where it sits (PLACE_KEYS, from its tags)."""
    return {**config.to_params(), **{key: tags[key] for key in PLACE_KEYS if key in tags}}


def log_inputs(record: MLflowTracker, prepared: Prepared, tags: dict[str, str]) -> None:
    """What the run is: its params, provenance tags, the user's code, the data set and the whole config as YAML
    (what `reproduce` rebuilds the config from)."""
    config, data = prepared.config, prepared.data
    record.log_params(run_params(config, tags))
    record.set_tags(provenance.run_tags(config, data.fingerprint, prepared.device))
    log_user_code(record, config)
    record.log_text(report.config_yaml(config), CONFIG_ARTIFACT)
    record.log_dataset(data.name, data.fingerprint, data_source(config),
                       {"train_samples": len(data.train_y), "test_samples": len(data.test_y),
                        "sample_shape": list(data.input_shape), "classes": data.num_classes})


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
    if data.name == "npz":
        return str(Path(data.path).resolve())
    if data.name == "image_folder" or data.name in ON_DISK:
        return str(Path(data.root).resolve())
    return data.name if user_code.is_reference(data.name) else f"builtin:{data.name}"


def log_outcome(record: MLflowTracker, prepared: Prepared, result: FitResult, model_name: str) -> None:
    """What came out: summary metrics (under summary/, e.g. summary/test_acc), why training stopped, and (as the
    config asks) figures, the weights and, when `model_name` is given, the model in MLflow's format under that name."""
    config = prepared.config
    if result.metrics:
        record.log_metrics({summary_key(key): value for key, value in result.metrics.items()},
                           step=result.epochs_run - 1)
        if config.track.figures:
            log_figures(record, prepared, result)
        if config.track.log_model:
            record.log_weights(result.model)
            if model_name:
                log_served_model(record, prepared, result.model, model_name)
    tags = {"stop_reason": result.stop_reason, "epochs_run": str(result.epochs_run)}
    if result.detail:
        tags["stop_detail"] = result.detail
    record.set_tags(tags)


def log_figures(record: Tracker, prepared: Prepared, result: FitResult) -> None:
    data = prepared.data
    record.log_figure(report.learning_curves(result.history, run_label(prepared.config)), "learning_curves.png")
    predictions = predict(result.model, data.test_x, prepared.normalize).cpu().numpy()
    record.log_figure(report.confusion_matrix(data.test_y.cpu().numpy(), predictions, data.num_classes),
                      "confusion_matrix.png")


def log_served_model(record: MLflowTracker, prepared: Prepared, network: torch.nn.Module, name: str) -> None:
    """The model in MLflow's format as it is served: raw inputs, the run's normalisation inside (core.serving)."""
    record.log_mlflow_model(serving.serving_model(prepared, network), name, serving.raw_example(prepared),
                            serving.signature(prepared), serving.code_paths(prepared))
