"""A study's search space: parsed and checked from YAML, then sampled by an Optuna trial.

    space:
      optim.lr:       {type: float, low: 1.0e-4, high: 0.3, log: true}
      model.hidden:   {type: int, low: 32, high: 512, log: true}   # every layer that wide
      optim.name:     {type: categorical, choices: [sgd, adam]}
      optim.momentum: {type: float, low: 0.0, high: 0.99, when: {optim.name: sgd}}

Each key is a config key. `when` makes a parameter conditional: it exists only
when the named keys (sampled earlier, or fixed in the base config) have the
given value (or one of a list of values).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from typing import Any

from core.config import OPEN_SECTIONS, Config, is_valid_key, suggestion
from core.errors import ConfigError

KINDS = ("float", "int", "categorical")
# How many layers a sampled width applies to when the base config leaves the list empty
# (the models' usual defaults: the MLP has two hidden layers, the conv nets about three blocks).
DEFAULT_DEPTH = {"model.hidden": 2, "model.channels": 3}


@dataclass
class Param:
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] = field(default_factory=list)
    when: dict[str, list[Any]] = field(default_factory=dict)

    def suggest(self, trial) -> Any:
        if self.kind == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return trial.suggest_categorical(self.key, self.choices)


def parse_space(space: Any, base: Config) -> list[Param]:
    """Check every entry of a spec's `space:` section; any problem is one ConfigError line."""
    if not isinstance(space, dict) or not space:
        raise ConfigError("study spec: `space:` must map config keys to parameter specs")
    params: list[Param] = []
    for key, entry in space.items():
        where = f"space.{key}"
        if not is_valid_key(key):
            raise ConfigError(f"{where}: unknown parameter {key!r}{suggestion(key)}")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping like {{type: float, low: 0.001, high: 0.1}}")
        unknown = set(entry) - {"type", "low", "high", "log", "step", "choices", "when"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        kind = entry.get("type")
        if kind not in KINDS:
            raise ConfigError(f"{where}: type must be one of {', '.join(KINDS)}, got {kind!r}")
        param = Param(key, kind, log=bool(entry.get("log", False)), when=_parse_when(where, entry.get("when")))
        if kind == "categorical":
            param.choices = entry.get("choices") or []
            if not isinstance(param.choices, list) or not param.choices:
                raise ConfigError(f"{where}: categorical needs a non-empty list of choices")
            if any(not isinstance(choice, (str, int, float, bool)) and choice is not None for choice in param.choices):
                raise ConfigError(f"{where}: choices must be plain values (write lists as text, e.g. \"[64, 64]\")")
        else:
            param.low, param.high = _number(where, entry, "low"), _number(where, entry, "high")
            param.step = entry.get("step")
            if param.low > param.high:
                raise ConfigError(f"{where}: low ({param.low}) is greater than high ({param.high})")
            if param.log and param.low <= 0:
                raise ConfigError(f"{where}: log scale needs low > 0, got {param.low}")
            if param.step is not None and (param.log or not isinstance(param.step, (int, float)) or param.step <= 0):
                raise ConfigError(f"{where}: step must be a positive number and cannot be combined with log")
            if kind == "int" and not (float(param.low).is_integer() and float(param.high).is_integer()):
                raise ConfigError(f"{where}: int parameters need whole-number bounds")
        _check_values_fit(param, base)
        params.append(param)
    return params


def sample(params: list[Param], trial, base: Config) -> Config:
    """A copy of `base` with values suggested by `trial` (conditional ones only when they apply)."""
    config = base.copy()
    for param in params:
        if not all(config.get(key) in values for key, values in param.when.items()):
            continue
        apply_value(config, param.key, param.suggest(trial))
    return config


def apply_value(config: Config, key: str, value: Any) -> None:
    """Set a sampled value; a number for a list of widths makes every layer that wide."""
    if isinstance(config.get(key), list) and isinstance(value, (int, float)) and not isinstance(value, bool):
        depth = len(config.get(key)) or DEFAULT_DEPTH.get(key, 1)
        value = [int(value)] * depth
    config.set(key, value)


def _parse_when(where: str, when: Any) -> dict[str, list[Any]]:
    if when is None:
        return {}
    if not isinstance(when, dict) or not when:
        raise ConfigError(f"{where}: `when` must map config keys to values, e.g. {{optim.name: sgd}}")
    parsed = {}
    for key, values in when.items():
        if not is_valid_key(key):
            raise ConfigError(f"{where}: `when` names unknown key {key!r}")
        parsed[key] = values if isinstance(values, list) else [values]
    return parsed


def _number(where: str, entry: dict, name: str) -> float:
    value = entry.get(name)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{where}: `{name}` must be a number, got {value!r}")
    return value


def _check_values_fit(param: Param, base: Config) -> None:
    """Every value the parameter can take must suit its config key (types and ranges)."""
    probes = param.choices if param.kind == "categorical" else [param.low, param.high]
    open_key = param.key.rpartition(".")[0] in OPEN_SECTIONS  # the user's own argument: no declared type
    field_type = None if open_key else typing.get_type_hints(type(_owner(base, param.key)))[param.key.split(".")[-1]]
    for value in probes:
        if param.kind == "int":
            value = int(value)
        if field_type is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"space.{param.key}: {param.key} takes whole numbers; use type: int")
        probe = base.copy()
        try:
            apply_value(probe, param.key, value)
            probe.validate()
        except ConfigError as error:
            raise ConfigError(f"space.{param.key}: value {value!r} does not fit: {error}") from None


def _owner(config: Config, key: str) -> Any:
    node: Any = config
    for part in key.split(".")[:-1]:
        node = getattr(node, part)
    return node
