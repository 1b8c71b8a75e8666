"""Warm starts: configurations queued as a study's first trials, from another study, a run, or by hand.

    --warm-start OTHER_STUDY   the best K complete trials of another study in the same storage
    --warm-start RUN_ID        the params of an MLflow run (a trial's run, or a `train` run)
    --enqueue k=v,k=v          one configuration by hand

Only the keys of this study's space are taken, and every value must lie in the space,
so each problem is one UserError before anything is created. Each queued trial names
where it came from (user attribute and MLflow tag `warm_start_from`); a resumed study
does not queue the same one twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from core.errors import UserError
from core.runs.logged import logged_params
from core.study.space import Param
from core.study.spec import StudySpec
from core.study.storage import check_storage, is_rdb, open_storage

RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class WarmStart:
    params: dict[str, Any]
    origin: str  # e.g. "study digits_mlp trial 12", "run 0a1b...", "--enqueue optim.lr=0.01"


def plan(spec: StudySpec, storage: str, source: str | None = None, top: int = 5,
         enqueue: list[str] | None = None) -> list[WarmStart]:
    """The configurations to queue, checked against the space; one UserError line for any problem."""
    if top < 1:
        raise UserError(f"--warm-start-top={top}: must be at least 1")
    starts: list[WarmStart] = []
    if source:
        starts += _from_run(spec, source) if RUN_ID.match(source) else _from_study(spec, storage, source, top)
    for text in enqueue or []:
        params = _parse_enqueue(spec, text)
        starts.append(WarmStart(params, "--enqueue " + ",".join(f"{k}={v}" for k, v in params.items())))
    return starts


def _from_study(spec: StudySpec, storage: str, name: str, top: int) -> list[WarmStart]:
    if name == spec.name:
        raise UserError(f"--warm-start {name}: that is this study; name another study or a run id")
    check_storage(storage)
    if not is_rdb(storage) and not Path(storage).exists():  # opening a journal would create it
        raise UserError(f"--warm-start {name}: no study of that name in {storage} (and not a run id)")
    try:
        other = optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        raise UserError(f"--warm-start {name}: no study of that name in {storage} (and not a run id)") from None
    complete = other.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise UserError(f"--warm-start {name}: that study has no complete trial")
    maximize = other.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    best = sorted(complete, key=lambda t: t.values[0], reverse=maximize)[:top]
    return [WarmStart(_in_space(spec, t.params, f"study {name} trial {t.number}"), f"study {name} trial {t.number}")
            for t in best]


def _from_run(spec: StudySpec, run_id: str) -> list[WarmStart]:
    params = logged_params(run_id)
    if params is None:
        raise UserError(f"--warm-start {run_id}: no MLflow run with that id in this store")
    typed = {p.key: _typed(p, params[p.key], f"run {run_id}") for p in spec.params
             if p.key in params and _applies(p, params, spec.base.to_flat())}
    return [WarmStart(_in_space(spec, typed, f"run {run_id}"), f"run {run_id}")]


def _applies(param: Param, logged: dict[str, str], base: dict[str, Any]) -> bool:
    """A conditional parameter (`when`) holds for the run: e.g. model.hidden only for an mlp run, not for a
    small_cnn run that logged its empty model.hidden."""
    return all(str(logged.get(key, base.get(key))) in {str(value) for value in values}
               for key, values in param.when.items())


def _parse_enqueue(spec: StudySpec, text: str) -> dict[str, Any]:
    by_key = {p.key: p for p in spec.params}
    values = {}
    for item in (part.strip() for part in text.split(",") if part.strip()):
        key, equals, value = item.partition("=")
        if not equals:
            raise UserError(f"--enqueue {text!r}: give key=value items separated by commas, e.g. optim.lr=0.01")
        if key not in by_key:
            raise UserError(f"--enqueue: {key} is not in the study's space ({', '.join(by_key)})")
        values[key] = _typed(by_key[key], value, "--enqueue")
    if not values:
        raise UserError("--enqueue: give key=value items separated by commas, e.g. optim.lr=0.01")
    return _in_space(spec, values, "--enqueue")


def _typed(param: Param, text: str, where: str) -> Any:
    """A value given as text (an MLflow param, a --enqueue item) as the space's type."""
    if param.kind == "categorical":
        for choice in param.choices:
            if str(choice) == text or str(choice).lower() == text.lower():
                return choice
        raise UserError(f"{where}: {param.key}={text} is not one of the space's choices {param.choices}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    if isinstance(value, list) and value and all(v == value[0] for v in value):
        value = value[0]  # a width logged per layer, [64, 64]: the space samples one width for all of them
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise UserError(f"{where}: {param.key}={text} is not a number")
    if param.kind == "int":
        if not float(value).is_integer():
            raise UserError(f"{where}: {param.key}={text} is not a whole number")
        return int(value)
    return float(value)


def _in_space(spec: StudySpec, params: dict[str, Any], where: str) -> dict[str, Any]:
    """The params of this study's space, each checked to lie in it (keys outside the space are dropped)."""
    by_key = {p.key: p for p in spec.params}
    kept = {key: value for key, value in params.items() if key in by_key}
    if not kept:
        raise UserError(f"{where}: none of its parameters is in this study's space ({', '.join(by_key)})")
    for key, value in kept.items():
        param = by_key[key]
        if param.kind == "categorical":
            inside = value in param.choices
        else:
            inside = isinstance(value, (int, float)) and param.low <= value <= param.high
        if not inside:
            allowed = param.choices if param.kind == "categorical" else f"[{param.low}, {param.high}]"
            raise UserError(f"{where}: {key}={value} is outside the space ({allowed})")
    return kept


def enqueue(study: optuna.Study, starts: list[WarmStart]) -> int:
    """Queue the warm starts this study does not hold yet (a resumed study queues none twice); returns how many.

    Each origin names one configuration (a trial, a run, or the --enqueue text), so it is the key.
    """
    held = {t.user_attrs.get("warm_start_from") for t in study.get_trials(deepcopy=False)}
    queued = 0
    for start in starts:
        if start.origin in held:
            continue
        study.enqueue_trial(start.params, user_attrs={"warm_start_from": start.origin}, skip_if_exists=False)
        held.add(start.origin)
        queued += 1
    return queued
