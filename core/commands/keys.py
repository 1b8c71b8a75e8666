"""`python -m core keys`: every config key with its default value."""

from __future__ import annotations

import argparse

from core.config import OPEN_SECTIONS, Config

HELP = "list every config key with its default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    for key, value in Config().to_flat().items():
        print(f"{key} = {value}")
    for section in OPEN_SECTIONS:
        owner = section.split(".")[0]
        print(f"{section}.* = (open: the keyword arguments of your own {owner}.name=module:function)")
    return 0
