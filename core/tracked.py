"""One training run recorded in MLflow (and shown live in Visdom when a server answers).

Shared by the train command, study trials and comparison folds, so every run
in the store is recorded the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.config import Config
from core.data import ON_DISK
from core.tracking import CompositeTracker, mlflow_store
from core.tracking.mlflow_sink import MLflowTracker
from core.train import FitResult, Prepared, ShouldStop, fit, prepare, run_label


@dataclass
class TrackedRun:
    run_id: str
    result: FitResult


def tracked_fit(config: Config, *, experiment: str | None = None, run_name: str | None = None,
                parent_run_id: str | None = None, tags: dict[str, str] | None = None,
                should_stop: ShouldStop | None = None, visdom_env: str | None = None,
                visdom_label: str | None = None, progress: bool = False,
                prepared: Prepared | None = None,
                on_run_start: Callable[[str], None] | None = None, mlflow_model: bool = True) -> TrackedRun:
    """Check the config (data, split, model) first, then open a run and train into it.

    `mlflow_model=False` keeps only the weights of the model (a study logs its best trial's model itself).
    """
    prepared = prepared or prepare(config)
    experiment = experiment or config.track.experiment
    name = run_name or run_label(config)
    with mlflow_store.open_run(experiment, name, tags, parent_run_id) as run_id:
        if on_run_start is not None:
            on_run_start(run_id)
        record = MLflowTracker(run_id, experiment, mlflow_model=mlflow_model)
        _log_dataset(record, config, prepared)
        trackers = [record]
        live = _visdom(config, visdom_env or experiment, visdom_label or name)
        if live is not None:
            trackers.append(live)
        tracker = CompositeTracker(*trackers)
        try:
            result = fit(config, tracker, should_stop=should_stop, progress=progress, prepared=prepared)
            if result.detail:
                tracker.set_tags({"stop_detail": result.detail})
        except KeyboardInterrupt:
            mlflow_store.drop_pooled_connections()  # before the last metrics are sent
            raise
        finally:
            tracker.close()
    return TrackedRun(run_id, result)


def _log_dataset(record: MLflowTracker, config: Config, prepared: Prepared) -> None:
    data = prepared.data
    on_disk = data.name in ON_DISK
    source = str(Path(config.data.root).resolve()) if on_disk else f"builtin:{data.name}"
    record.log_dataset(data.name, data.fingerprint, source,
                       {"train_samples": len(data.train_y), "test_samples": len(data.test_y),
                        "sample_shape": list(data.input_shape), "classes": data.num_classes})


def _visdom(config: Config, env: str, label: str):
    if config.track.visdom == "off":
        return None
    from core.tracking.visdom_sink import make_visdom_tracker

    return make_visdom_tracker(config.track.visdom, config.track.visdom_url, env, label)
