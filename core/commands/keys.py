"""`python -m core keys`: every config key with its default, type, allowed values and description."""

from __future__ import annotations

import argparse
import typing

from core import names
from core.config import CHOICES, OPEN_SECTIONS, Config, _resolve, _type_hints, descriptions

HELP = "list every config key with its default, type, allowed values and what it does"
EXAMPLES = ["python -m core keys", "python -m core keys | grep optim."]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def type_name(key: str) -> str:
    owner, name, _ = _resolve(Config(), key)
    kind = _type_hints(type(owner))[name]
    if typing.get_origin(kind) is list:
        return f"list of {typing.get_args(kind)[0].__name__}"
    return {"str": "text", "int": "int", "float": "number", "bool": "true/false"}[kind.__name__]


def shown_default(key: str, value) -> str:
    """The default as it is used: model.hidden = [] stands for the model's own widths."""
    if key == "model.hidden":
        return f"[] = the model's own (mlp: {names.HIDDEN['mlp']}, lenet5: {names.HIDDEN['lenet5']}, ...)"
    return repr(value) if isinstance(value, str) else str(value).replace("True", "true").replace("False", "false")


def rows() -> list[tuple[str, str, str, str]]:
    """(key, default, type and choices, description) for every fixed key."""
    about = descriptions()
    table = []
    for key, value in Config().to_flat().items():
        kind = type_name(key)
        if key in CHOICES:
            kind += ": " + " | ".join(CHOICES[key])
            if key in ("data.name", "model.name", "track.metrics"):
                kind += " | module:function"
        table.append((key, shown_default(key, value), kind, about.get(key, "")))
    return table


def main(args: argparse.Namespace) -> int:
    for key, default, kind, about in rows():
        print(f"{key} = {default}")
        print(f"    {kind}. {about}" if about else f"    {kind}")
    for section in OPEN_SECTIONS:
        owner = section.split(".")[0]
        print(f"{section}.* = (open)")
        print(f"    any name, typed like YAML: the keyword arguments of your own {owner}.name=module:function")
    return 0
