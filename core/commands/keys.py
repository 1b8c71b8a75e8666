"""`python -m core keys`: every config, study spec and experiment spec key with its default, type, allowed values
and description, all read from the keys' declarations (core/schema.py)."""

from __future__ import annotations

import argparse
import typing

from core import schema
from core.config import declarations, key_type, open_declarations

HELP = "list every config, study spec and experiment spec key: default, type, allowed values, what it does"
EXAMPLES = ["python -m core keys", "python -m core keys --section study", "python -m core keys | grep optim."]
SECTIONS = {"config": "config keys (train key=value, or a spec's `config:` section)",
            "study": "study spec keys (python -m core study SPEC.yaml)",
            "experiment": "experiment spec keys (python -m core compare SPEC.yaml)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--section", choices=tuple(SECTIONS), help="list only this section's keys")


def type_name(key: str) -> str:
    kind = key_type(key)
    if typing.get_origin(kind) is list:
        return f"list of {_plain_type(typing.get_args(kind)[0])}"
    return _plain_type(kind)


def _plain_type(kind: type) -> str:
    return {"str": "text", "int": "int", "float": "number", "bool": "true/false"}[kind.__name__]


def shown(value: typing.Any) -> str:
    """A default as YAML writes it: 'auto', true, [1, 8, 8]."""
    if value is None:
        return "none"
    return repr(value) if isinstance(value, str) else str(value).replace("True", "true").replace("False", "false")


def about(declared: schema.Key) -> str:
    """The description, and when the key is used if not always."""
    return f"{declared.about} ({declared.used_when})" if declared.used_when else declared.about


def rows() -> list[tuple[str, str, str, str]]:
    """(key, default, type and allowed values, description) for every fixed config key."""
    table = []
    for key, declared in declarations().items():
        allowed = declared.allowed()
        table.append((key, declared.shown_default or shown(declared.default),
                      type_name(key) + (f": {allowed}" if allowed else ""), about(declared)))
    return table


def spec_rows(keys: dict[str, schema.Key]) -> list[tuple[str, str, str, str]]:
    """(key, default, allowed values, description) for every declared key of a study or experiment spec."""
    return [(key, declared.shown_default or shown(declared.default), declared.allowed(), about(declared))
            for key, declared in keys.items()]


def section_rows(section: str) -> list[tuple[str, str, str, str]]:
    if section == "config":
        return rows() + [(f"{key}.<name>", "(open)", "any name, typed like YAML", declared.about)
                         for key, declared in open_declarations().items()]
    if section == "study":
        from core.study.spec import STUDY_KEYS  # imports Optuna: only for this section

        return spec_rows(STUDY_KEYS)
    from core.compare import EXPERIMENT_KEYS

    return spec_rows(EXPERIMENT_KEYS)


def main(args: argparse.Namespace) -> int:
    chosen = [args.section] if getattr(args, "section", None) else list(SECTIONS)
    for number, section in enumerate(chosen):
        if len(chosen) > 1:
            print(("\n" if number else "") + f"# {SECTIONS[section]}")
        for key, default, kind, text in section_rows(section):
            print(f"{key} = {default}")
            print("    " + ". ".join(part for part in (kind, text) if part))
    return 0
