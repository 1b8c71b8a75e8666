"""Reading a logged training run back: its run and whole config (refusing runs that train nothing), the user
code it used (checked against now), and its model rebuilt with the logged weights; finding runs by tag, and a
finished run's fit read back (`logged_fit`) for a resumed comparison that reuses its folds."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from mlflow.entities import Run

from core import outages, user_code
from core.config import Config
from core.device import rerun_device
from core.errors import ConfigError, UserError
from core.names import EPOCH_PREFIX, SUMMARY_PREFIX
from core.runs import record
from core.runs.place import PLACE_KEYS
from core.runs.record import CODE_TAG, CONFIG_ARTIFACT
from core.runs.run import Run as OpenRun
from core.tracking import mlflow_store
from core.train import Prepared, Stop, prepare

SUMMARY_KINDS = {"study": "a study's parent run", "comparison": "a comparison's parent run",
                 "remedy": "a remedy's summary run", "nested": "a nested estimate's parent run"}


def logged_run(run_id: str) -> tuple[Run, Config]:
    """The run and its config; any reason it cannot be reproduced is one UserError line."""
    run = mlflow_store.existing_run(run_id)
    client = mlflow_store.client()
    tags = run.data.tags
    if run.info.lifecycle_stage == "deleted":
        raise UserError(f"run {run_id} is deleted (restore it in the MLflow UI first)")
    if tags.get("made_by") != "core" and tags.get("kind") not in SUMMARY_KINDS:
        raise UserError(f"run {run_id} was not made by this tool (no made_by=core tag)")
    if tags.get("kind") in SUMMARY_KINDS or "data_fingerprint" not in tags:
        what = SUMMARY_KINDS.get(tags.get("kind", ""), "a k-fold trial's summary run")
        children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=5)
        hint = f"; e.g. its child run {children[0].info.run_id}" if children else ""
        raise UserError(f"run {run_id} is {what}, which trains nothing: give one of its child runs{hint}")
    try:
        config = Config.from_flat(logged_config(run))
    except ConfigError as error:
        raise UserError(f"run {run_id}: its logged config does not make a config ({error})") from None
    return run, config


def logged_config(run: Run) -> dict[str, object]:
    """The run's whole flat config: its artifact config.yaml (its params hold only the keys that apply), or
    for a run without one its params, less those that say where it sits (trial_number, fold, ...)."""
    client = mlflow_store.client()
    if any(item.path == CONFIG_ARTIFACT for item in client.list_artifacts(run.info.run_id)):
        with tempfile.TemporaryDirectory() as folder:
            text = Path(client.download_artifacts(run.info.run_id, CONFIG_ARTIFACT, folder)).read_text()
        flat = yaml.safe_load(text)
        if isinstance(flat, dict):
            return flat
    return {key: value for key, value in run.data.params.items() if key not in PLACE_KEYS}


def code_warnings(tags: dict[str, str], config: Config, allow_code_change: bool) -> list[str]:
    """Refuse (one UserError line) when a user source file the run used differs now, unless allowed."""
    logged = {key[len(CODE_TAG):]: digest for key, digest in tags.items() if key.startswith(CODE_TAG)}
    now = {source.relative: source for source in user_code.sources(config.user_references())}
    changed = sorted(path for path, digest in logged.items() if path not in now or now[path].sha256 != digest)
    changed += sorted(path for path in now if path not in logged and logged)  # a file the run did not import
    if not changed:
        return []
    where = ", ".join(str(now[path].path) if path in now else f"{path} (missing now)" for path in changed)
    if not allow_code_change:
        raise UserError(f"the code differs from the run's: {where} changed since the run "
                        f"(--allow-code-change to rerun anyway)")
    return [f"code changed since the run: {where}"]


def load_logged_weights(run_id: str, allow_code_change: bool = False,
                        device: str | None = None) -> tuple[Run, Prepared]:
    """(run, prepared) with the run's model rebuilt from its logged config and weights loaded: on `device`,
    else on the run's logged device type (device.rerun_device)."""
    run, config = logged_run(run_id)
    code_warnings(run.data.tags, config, allow_code_change)
    config.device = rerun_device(run.data.tags.get("device", ""), device)
    prepared = prepare(config)  # the normaliser comes from the training part, as in training
    client = mlflow_store.client()
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = Path(client.download_artifacts(run_id, "weights/state_dict.pt", folder))
        except Exception as error:
            outages.raise_outage_behind(error)  # the server is down, or the disk full: not the weights
            raise UserError(f"run {run_id} has no logged weights (weights/state_dict.pt)") from None
        try:
            state = torch.load(path, map_location=prepared.device, weights_only=True)
            prepared.model.load_state_dict(state)
        except Exception as error:
            raise UserError(f"run {run_id}: weights/state_dict.pt is corrupted or does not fit the model "
                            f"({str(error).splitlines()[0]})") from None
    return run, prepared


def log_served_model_of(run_id: str, experiment: str, name: str) -> None:
    """Log a training run's model in MLflow's format into that run, rebuilt from its logged config and weights
    (a study does this for its best trial only: a model per trial would cost every trial time)."""
    _, prepared = load_logged_weights(run_id)
    with OpenRun.of(run_id, experiment).recorder() as writer:
        record.log_served_model(writer, prepared, prepared.model, name)


def logged_params(run_id: str) -> dict[str, str] | None:
    """A run's params; None when the store has no such run, or no store is there (an outage goes through)."""
    try:
        return dict(mlflow_store.existing_run(run_id).data.params)
    except UserError:
        return None


# Going on in an unfinished comparison: finding its runs and reading back the folds it finished.


@dataclass(frozen=True)
class Found:
    """A run found in the store, as much as a caller deciding whether to go on in it needs."""

    id: str
    name: str
    status: str  # RUNNING, FINISHED, FAILED, KILLED
    tags: dict[str, str]


def runs_tagged(experiment: str, key: str, value: str) -> list[Found]:
    """The experiment's runs whose tag `key` is `value`, newest first. `value` is ours (a kind, a fingerprint, a
    run id): user-given names are compared by the caller, since MLflow's filter strings do not escape quotes."""
    client = mlflow_store.client()
    found = client.search_runs([mlflow_store.experiment_id(experiment)], f"tags.`{key}` = '{value}'",
                               max_results=5000, order_by=["attributes.start_time DESC"])
    return [Found(run.info.run_id, run.info.run_name or "", run.info.status, dict(run.data.tags)) for run in found]


def children(experiment: str, run_id: str) -> list[Found]:
    """A run's child runs, newest first."""
    return runs_tagged(experiment, mlflow_store.PARENT_TAG, run_id)


def finished_children(experiment: str, run_id: str) -> dict[str, str]:
    """{name: run id} of a run's FINISHED children (the newest of a name): folds a resumed group need not train."""
    finished: dict[str, str] = {}
    for child in children(experiment, run_id):
        if child.status == "FINISHED":
            finished.setdefault(child.name, child.id)
    return finished


@dataclass(frozen=True)
class LoggedFit:
    """A FINISHED training run read back where its fit is reused instead of trained again (a resumed comparison's
    fold): what a caller reads of a FitResult, from the run's summary/ and epoch/ metrics, under plain names."""

    history: list[dict[str, float]]  # per epoch: train_acc, val_acc, epoch_seconds, ...
    metrics: dict[str, float]  # the summary: final_val_acc, test_acc, ...
    stop: Stop

    @property
    def epochs_run(self) -> int:
        return len(self.history)


def logged_fit(run_id: str) -> LoggedFit:
    """The run's summary values, its whole per-epoch history (every epoch/ metric by step) and why it stopped."""
    client = mlflow_store.client()
    run = client.get_run(run_id)
    logged = run.data.metrics
    summary = {key.removeprefix(SUMMARY_PREFIX): value for key, value in logged.items()
               if key.startswith(SUMMARY_PREFIX)}
    epochs: dict[int, dict[str, float]] = {}
    for key in sorted(key for key in logged if key.startswith(EPOCH_PREFIX)):
        for point in client.get_metric_history(run_id, key):
            epochs.setdefault(point.step, {})[key.removeprefix(EPOCH_PREFIX)] = point.value
    tags = run.data.tags
    stop = Stop(tags.get("stop_reason", Stop().reason), tags.get("stop_detail", ""))
    return LoggedFit([epochs[step] for step in sorted(epochs)], summary, stop)


# Reading back what a study or comparison logged on its parent run (its report page is made from it).

GROUP_KINDS = ("study", "comparison", "nested")  # the parent run of a study, a comparison, a nested estimate


def newest_group(name: str, kinds: tuple[str, ...] = GROUP_KINDS) -> Found | None:
    """The newest parent run, of one of `kinds`, of the study, comparison or nested estimate named `name` (its
    MLflow experiment), else None; a store or experiment that is not there is None too, and nothing is created.
    A nested estimate's fold studies sit in its experiment under their own names (`NAME-outer-0-of-3`, their tag
    `study`): they are not NAME's."""
    mlflow_store.require_store()
    client = mlflow_store.client()
    experiment = client.get_experiment_by_name(name)
    if experiment is None or experiment.lifecycle_stage == "deleted":
        return None
    found = []
    for kind in kinds:
        runs = client.search_runs([experiment.experiment_id], f"tags.kind = '{kind}'", max_results=1000,
                                  order_by=["attributes.start_time DESC"])
        found += [run for run in runs if run.data.tags.get("study", name) == name][:1]
    if not found:
        return None
    run = max(found, key=lambda run: run.info.start_time)
    return Found(run.info.run_id, run.info.run_name or "", run.info.status, dict(run.data.tags))


def artifact_bytes(run_id: str, path: str) -> bytes | None:
    """A file the run logged (e.g. `final/final.json`), or None when it has none at `path` (an outage goes
    through)."""
    client = mlflow_store.client()
    folder = path.rpartition("/")[0]
    if not any(item.path == path for item in client.list_artifacts(run_id, folder or None)):
        return None
    with tempfile.TemporaryDirectory() as temporary:
        return Path(client.download_artifacts(run_id, path, temporary)).read_bytes()


def artifact_paths(run_id: str, folder: str | None = None) -> list[str]:
    """The paths of the files the run logged in `folder` (its top level by default)."""
    return [item.path for item in mlflow_store.client().list_artifacts(run_id, folder) if not item.is_dir]
