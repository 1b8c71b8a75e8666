"""Reproduce a logged run from its config, and re-evaluate a logged model.

A run's artifact config.yaml is its whole flat config, so `Config.from_flat`
rebuilds exactly what was trained (a study trial's holds its derived seed, a
comparison fold's its fold); its params are only the keys that apply. Before
anything is written, the data set's fingerprint is checked against the one
logged, and differences in versions, code and device become warnings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from mlflow.entities import Run

from core import names, provenance
from core.device import deterministic_reruns, rerun_device
from core.errors import UserError
from core.names import epoch_key, logged_summary
from core.runs import Place, fit_in, open_run
from core.runs.logged import code_warnings, load_logged_weights, logged_run
from core.runs.place import PLACE_KEYS
from core.threads import Threads
from core.tracking import mlflow_store
from core.train import evaluate, prepare

TABLE_ARTIFACT = "reproduction.csv"  # every epoch and metric of both runs, in the reproduced run


@dataclass
class Reproduction:
    original_run_id: str
    run_id: str
    exact: bool  # bit-identical expected (deterministic, CPU, same device type)
    tolerance: float
    rows: list[tuple[int, str, float, float]]  # (epoch, metric, original, reproduced)
    first_divergence: int | None
    warnings: list[str] = field(default_factory=list)

    @property
    def agree(self) -> bool:
        return self.first_divergence is None


def environment_warnings(tags: dict[str, str], device_name: str) -> list[str]:
    warnings = []
    for name, version in provenance.package_versions().items():
        logged = tags.get(f"version.{name}")
        if logged and logged != version:
            warnings.append(f"{name} was {logged} when the run was made, is {version} now")
    commit = provenance.git_commit()
    if tags.get("git_commit") and tags["git_commit"] != commit:
        warnings.append(f"code was at commit {tags['git_commit']}, is at {commit} now")
    if tags.get("device") and tags["device"] != device_name:
        warnings.append(f"device was {tags['device']}, is {device_name} now")
    if tags.get("cpu_linear") == "onednn":
        warnings.append("the run's Linear layers multiplied in oneDNN, which this version no longer uses: "
                        "expect differences in the last bits")
    return warnings


def reproduce(run_id: str, epochs: int | None = None, tolerance: float = 1e-4,
              allow_data_change: bool = False, allow_code_change: bool = False,
              device: str | None = None) -> Reproduction:
    """Rerun `run_id` from its logged config, on its logged device type unless `device` says otherwise."""
    run, config = logged_run(run_id)
    tags = run.data.tags
    config.device = rerun_device(tags.get("device", ""), device)
    changed_code = code_warnings(tags, config, allow_code_change)
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs={epochs}: must be at least 1")
        config.train.epochs = epochs
    prepared = prepare(config)
    if tags.get("torch_threads", "").isdigit():  # the run's threads (its auto choice there): the same sums again
        torch.set_num_threads(int(tags["torch_threads"]))  # in place of prepare's choice; the config stays the run's
        prepared.threads = Threads(int(tags["torch_threads"]), "the reproduced run's torch_threads")
    deterministic_reruns()
    logged_fingerprint = tags["data_fingerprint"]
    if prepared.data.fingerprint != logged_fingerprint and not allow_data_change:
        raise UserError(f"the data differs from the run's: fingerprint {prepared.data.fingerprint} now, "
                        f"{logged_fingerprint} logged (--allow-data-change to rerun anyway)")
    device = provenance.device_name(prepared.device)
    warnings = environment_warnings(tags, device) + changed_code
    if prepared.data.fingerprint != logged_fingerprint:
        warnings.append(f"data fingerprint {prepared.data.fingerprint} differs from the logged {logged_fingerprint}")
    compared = compared_epochs(run, config.train.epochs, warnings)  # before anything is run
    exact = (config.train.deterministic and prepared.device.type == "cpu"
             and tags.get("device", "").startswith("cpu"))
    experiment = mlflow_store.client().get_experiment(run.info.experiment_id).name
    keep = {k: tags[k] for k in ("study", *PLACE_KEYS) if k in tags}
    place = Place(experiment, f"{run.info.run_name} (reproduced)", tags={**keep, "reproduced_from": run_id})
    with open_run(place) as rerun:
        fit_in(rerun, prepared)
    keys = names.epoch_keys(config.task)  # the losses and the task's epoch metrics (train_acc, val_rmse, ...)
    rows, first = compare_histories(run_id, rerun.id, compared, 0.0 if exact else tolerance, keys)
    rerun.log_text(table_csv(rows), TABLE_ARTIFACT)
    return Reproduction(run_id, rerun.id, exact, 0.0 if exact else tolerance, rows, first, warnings)


def compared_epochs(run: Run, epochs: int, warnings: list[str]) -> int:
    """The epochs to compare: a run that did not finish (FAILED, KILLED) only has those before it stopped."""
    if run.info.status == "FINISHED":
        return epochs
    logged = len(epoch_history(run.info.run_id, "train_loss"))
    if logged == 0:
        raise UserError(f"run {run.info.run_id} is {run.info.status} and logged no epoch: there is nothing to compare")
    compared = min(epochs, logged)
    warnings.append(f"run {run.info.run_id} is {run.info.status}: it stopped after {logged} epochs; "
                    f"only those {compared} are compared")
    return compared


def compare_histories(original: str, reproduced: str, epochs: int, tolerance: float,
                      keys: tuple[str, ...]) -> tuple[list[tuple[int, str, float, float]], int | None]:
    """Per-epoch metrics side by side; the first epoch where any differs by more than `tolerance`."""
    history = {}
    for run_id in (original, reproduced):
        for key in keys:
            history[run_id, key] = epoch_history(run_id, key)
    logged = set().union(*(history[original, key] for key in keys))
    made = set().union(*(history[reproduced, key] for key in keys))
    # Only the epochs either run trained: early stopping and pruning end runs before `epochs`, and a resumed
    # run logged from its resume epoch on.
    start = min(logged, default=0)
    rows, first = [], None
    for epoch in sorted(e for e in logged | made if start <= e < epochs):
        for key in keys:
            old, new = history[original, key].get(epoch, math.nan), history[reproduced, key].get(epoch, math.nan)
            if math.isnan(old) and math.isnan(new):
                continue
            rows.append((epoch, key, old, new))
            same = (old == new) if tolerance == 0 else abs(old - new) <= tolerance
            if not same and first is None:
                first = epoch
    return rows, first


def epoch_history(run_id: str, name: str) -> dict[int, float]:
    """{epoch: value} of a per-epoch metric: epoch/<name>, or <name> in runs logged before the prefix."""
    client = mlflow_store.client()
    for key in (epoch_key(name), name):
        history = client.get_metric_history(run_id, key)
        if history:
            return {m.step: m.value for m in history}
    return {}


def table_csv(rows: list[tuple[int, str, float, float]]) -> str:
    lines = ["epoch,metric,original,reproduced,difference"]
    lines += [f"{epoch},{key},{old!r},{new!r},{new - old!r}" for epoch, key, old, new in rows]
    return "\n".join(lines) + "\n"


def evaluate_logged_model(run_id: str, allow_code_change: bool = False,
                          device: str | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """(logged test metrics, metrics of the logged weights re-evaluated on the test set now), on the run's
    logged device type unless `device` says otherwise."""
    run, prepared = load_logged_weights(run_id, allow_code_change, device=device)
    deterministic_reruns()
    now = evaluate(prepared.model, prepared.test, prepared.normalize, prepared.task)
    now = {f"test_{name}": value for name, value in now.items()}
    logged = {key: logged_summary(run.data.metrics, key) for key in now}
    logged = {key: math.nan if value is None else value for key, value in logged.items()}
    return logged, now
