"""`python -m core keys`: every config key with its default value."""

from __future__ import annotations

import argparse

from core.config import Config

HELP = "list every config key with its default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def main(args: argparse.Namespace) -> int:
    for key, value in Config().to_flat().items():
        print(f"{key} = {value}")
    return 0
