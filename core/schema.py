"""One declaration per key: what it means, its default, and the values it takes.

A config key is declared once, beside its dataclass field (`setting`); a study or
experiment spec key once, in its loader's table (`Key(default=...)`). Checks,
`python -m core keys`, `Config.unused_keys` and the tests' fuzzing all read these.

Why plain dataclass metadata and not pydantic (or another typed-config library):
no new pinned dependency; config checks stay a fraction of a second and torch-free;
the exact flat round trip (every value also as MLflow's string) and the one-line
error messages naming the key already exist and are what users and tests see.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from core import user_code
from core.errors import ConfigError

METADATA = "key"  # where a config field's Key sits in its dataclasses.field metadata


@dataclass(frozen=True)
class Range:
    """The numbers allowed: low..high, each end included unless open; `says` is how a value outside reads."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    says: str = ""

    def holds(self, number: float) -> bool:
        above = self.low is None or (number > self.low if self.low_open else number >= self.low)
        below = self.high is None or (number < self.high if self.high_open else number <= self.high)
        return above and below

    def shown(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        if self.low_open or self.high_open:
            return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        return f"in {self.low}..{self.high}"


def at_least(low: float) -> Range:
    return Range(low, says=f"must be at least {low}")


def greater_than(low: float) -> Range:
    return Range(low, low_open=True, says=f"must be greater than {low}")


OPEN_UNIT = Range(0, 1, low_open=True, high_open=True, says="must be between 0 and 1 (exclusive)")


@dataclass(frozen=True)
class When:
    """The condition under which a key is used: `key`'s value is one of `values` (or, with `unless`, none of them).
    Under any other value the key changes nothing, so a run's params leave it out."""

    key: str
    values: tuple[Any, ...]
    unless: bool = False

    def __call__(self, flat: dict[str, Any]) -> bool:
        """Whether the key is used, given every key's value (Config.to_flat())."""
        value = flat[self.key]
        found = any(item in self.values for item in value) if isinstance(value, list) else value in self.values
        return found != self.unless

    def __str__(self) -> str:
        shown = " | ".join(str(value).lower() if isinstance(value, bool) else str(value) for value in self.values)
        return f"used {'unless' if self.unless else 'when'} {self.key} is {shown}"


def when(key: str, *values: Any) -> When:
    return When(key, tuple(values))


def unless(key: str, *values: Any) -> When:
    return When(key, tuple(values), unless=True)


@dataclass(frozen=True)
class Key:
    """One key: its description and its rules. `values` bounds a number, or each item of a list."""

    about: str
    default: Any = None  # spec keys only: a config key's default is its field's
    shown_default: str = ""  # how `keys` shows a default that is not a plain value ("the file's name")
    choices: tuple[Any, ...] = ()
    reference: str = ""  # also takes module:function of the user's own <reference> (see core/user_code.py)
    values: Range | None = None
    items: tuple[int, int] | None = None  # a list's smallest and largest length (told by values.says)
    pattern: str = ""  # text: "" or a match of this (re.match)
    pattern_says: str = ""
    used_when: When | None = None

    def allowed(self) -> str:
        """The values it takes, as `keys` shows them: "sgd | adam", "> 0", "each >= 1", ..."""
        parts = []
        if self.choices:
            parts.append(" | ".join(map(str, self.choices)) + (" | module:function" if self.reference else ""))
        if self.items:
            parts.append(f"{self.items[0]} to {self.items[1]} items")
        if self.values:
            parts.append(("each " if self.items or self.is_list() else "") + self.values.shown())
        if self.pattern:
            parts.append(f"'' or {self.pattern_says}")
        return ", ".join(parts)

    def is_list(self) -> bool:
        return isinstance(self.default, list)


def setting(default: Any, about: str, **rules: Any) -> Any:
    """A config field declared with its Key: `lr: float = setting(0.05, "learning rate", values=greater_than(0))`."""
    metadata = {METADATA: Key(about, default=default, **rules)}
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check(key: str, declared: Key, value: Any) -> None:
    """One ConfigError line naming `key` when `value` breaks its declaration."""
    values = value if isinstance(value, list) else [value]
    if declared.choices:
        for item in values:
            _choice(key, item, declared)
    short = declared.items and not declared.items[0] <= len(values) <= declared.items[1]
    if declared.values and (short or not all(declared.values.holds(item) for item in values)):
        raise ConfigError(f"{key}={shorten(str(value))}: {declared.values.says}")  # says also the length
    if declared.pattern and value and not re.match(declared.pattern, value):
        raise ConfigError(f"{key}={value!r}: give {declared.pattern_says}")


def _choice(key: str, value: Any, declared: Key) -> None:
    if value in declared.choices or (declared.reference and user_code.is_reference(value)):
        return
    also = f", nor an import path of your own {declared.reference} (module:function)" if declared.reference else ""
    raise ConfigError(f"{key}={value!r} is not one of: {', '.join(map(str, declared.choices))}{also}")


def sections(keys: dict[str, Key]) -> tuple[str, ...]:
    """The top-level names of a spec's declared keys, in order: name, config, space, ..."""
    return tuple(dict.fromkeys(key.split(".")[0] for key in keys))


def members(keys: dict[str, Key], section: str) -> tuple[str, ...]:
    """The declared keys of one section of a spec, without its name: budget -> trials, timeout, ..."""
    return tuple(key.split(".", 1)[1] for key in keys if key.startswith(section + ".") and "<" not in key)


def shorten(text: str, keep: int = 60) -> str:
    """A user's long value in a one-line message: its start and its length, not all of it."""
    return text if len(text) <= keep else f"{text[:keep]}... ({len(text)} characters)"
