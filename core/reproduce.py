"""Reproduce a logged run from its config, and re-evaluate a logged model.

A run's artifact config.yaml is its whole flat config, so `Config.from_flat`
rebuilds exactly what was trained (a study trial's holds its derived seed, a
comparison fold's its fold); its params are only the keys that apply. Before
anything is written, the data set's fingerprint is checked against the one
logged, and differences in versions, code and device become warnings.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from mlflow.entities import Run

from core import provenance, user_code
from core.config import Config
from core.errors import ConfigError, UserError
from core.names import epoch_key, logged_summary
from core.tracked import CODE_TAG, CONFIG_ARTIFACT, PLACE_KEYS, tracked_fit
from core.tracking import mlflow_store
from core.train import Prepared, evaluate, prepare

COMPARED = ("train_loss", "train_acc", "val_loss", "val_acc")
TABLE_ARTIFACT = "reproduction.csv"  # every epoch and metric of both runs, in the reproduced run
SUMMARY_KINDS = {"study": "a study's parent run", "comparison": "a comparison's parent run",
                 "remedy": "a remedy's summary run"}


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


def reproduce(run_id: str, epochs: int | None = None, tolerance: float = 1e-4,
              allow_data_change: bool = False, allow_code_change: bool = False) -> Reproduction:
    run, config = logged_run(run_id)
    tags = run.data.tags
    changed_code = code_warnings(tags, config, allow_code_change)
    if tags.get("torch_threads", "").isdigit():  # e.g. a study worker's share of the cores: the same sums again
        torch.set_num_threads(int(tags["torch_threads"]))
    if epochs is not None:
        if epochs < 1:
            raise UserError(f"--epochs={epochs}: must be at least 1")
        config.train.epochs = epochs
    prepared = prepare(config)
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
    tracked = tracked_fit(config, experiment=experiment, run_name=f"{run.info.run_name} (reproduced)",
                          tags={**keep, "reproduced_from": run_id}, prepared=prepared)
    rows, first = compare_histories(run_id, tracked.run_id, compared, 0.0 if exact else tolerance)
    mlflow_store.client().log_text(tracked.run_id, table_csv(rows), TABLE_ARTIFACT)
    return Reproduction(run_id, tracked.run_id, exact, 0.0 if exact else tolerance, rows, first, warnings)


def compared_epochs(run: Run, epochs: int, warnings: list[str]) -> int:
    """The epochs to compare: a run that did not finish (FAILED, KILLED) only has those before it stopped."""
    if run.info.status == "FINISHED":
        return epochs
    logged = len(epoch_history(run.info.run_id, COMPARED[0]))
    if logged == 0:
        raise UserError(f"run {run.info.run_id} is {run.info.status} and logged no epoch: there is nothing to compare")
    compared = min(epochs, logged)
    warnings.append(f"run {run.info.run_id} is {run.info.status}: it stopped after {logged} epochs; "
                    f"only those {compared} are compared")
    return compared


def compare_histories(original: str, reproduced: str, epochs: int,
                      tolerance: float) -> tuple[list[tuple[int, str, float, float]], int | None]:
    """Per-epoch metrics side by side; the first epoch where any differs by more than `tolerance`."""
    history = {}
    for run_id in (original, reproduced):
        for key in COMPARED:
            history[run_id, key] = epoch_history(run_id, key)
    logged = set().union(*(history[original, key] for key in COMPARED))
    made = set().union(*(history[reproduced, key] for key in COMPARED))
    # Only the epochs either run trained: early stopping and pruning end runs before `epochs`, and a resumed
    # run logged from its resume epoch on.
    start = min(logged, default=0)
    rows, first = [], None
    for epoch in sorted(e for e in logged | made if start <= e < epochs):
        for key in COMPARED:
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


def load_logged_weights(run_id: str, allow_code_change: bool = False) -> tuple[Run, Prepared]:
    """(run, prepared) with the run's model rebuilt from its logged config and weights loaded."""
    run, config = logged_run(run_id)
    code_warnings(run.data.tags, config, allow_code_change)
    prepared = prepare(config)  # the normaliser comes from the training part, as in training
    client = mlflow_store.client()
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = Path(client.download_artifacts(run_id, "weights/state_dict.pt", folder))
        except Exception as error:
            mlflow_store.raise_outage_behind(error)  # the server is down, or the disk full: not the weights
            raise UserError(f"run {run_id} has no logged weights (weights/state_dict.pt)") from None
        try:
            state = torch.load(path, map_location=prepared.device, weights_only=True)
            prepared.model.load_state_dict(state)
        except Exception as error:
            raise UserError(f"run {run_id}: weights/state_dict.pt is corrupted or does not fit the model "
                            f"({str(error).splitlines()[0]})") from None
    return run, prepared


def evaluate_logged_model(run_id: str, allow_code_change: bool = False) -> tuple[dict[str, float], dict[str, float]]:
    """(logged test metrics, metrics of the logged weights re-evaluated on the test set now)."""
    run, prepared = load_logged_weights(run_id, allow_code_change)
    data = prepared.data
    now = evaluate(prepared.model, data.test_x, data.test_y, prepared.normalize,
                   autocast=prepared.device.type == "cuda")  # as final_metrics measured it
    logged = {key: logged_summary(run.data.metrics, key) for key in ("test_loss", "test_acc")}
    logged = {key: math.nan if value is None else value for key, value in logged.items()}
    return logged, {"test_loss": now["loss"], "test_acc": now["acc"]}
