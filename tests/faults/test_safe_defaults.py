"""Servers bind 127.0.0.1 unless told otherwise; user-given names never become paths outside the store."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core import servers
from core.commands.ui import ui_command
from core.names import safe_name
from core.tracking import mlflow_store


def test_ui_binds_loopback_by_default():
    from core.__main__ import build_parser

    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    command = ui_command("sqlite:///x.db", args.host, args.port)
    assert command[command.index("--host") + 1] == "127.0.0.1"


def test_an_explicit_host_warns_what_is_exposed(caplog):
    with caplog.at_level(logging.WARNING):
        servers.warn_if_exposed("0.0.0.0", "the MLflow UI")
        servers.warn_if_exposed("127.0.0.1", "the MLflow UI")
    assert len(caplog.records) == 1
    assert "0.0.0.0" in caplog.text and "MLflow UI" in caplog.text


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path", "a/b\\c", "..", "", "trial 7: lr=3e-3"])
def test_names_are_one_safe_path_component(name):
    safe = safe_name(name)
    assert safe and "/" not in safe and "\\" not in safe and safe not in (".", "..")


def test_experiment_artifacts_stay_inside_the_store(isolated_store):
    experiment_id = mlflow_store.experiment_id("../../outside")
    location = mlflow_store.client().get_experiment(experiment_id).artifact_location
    path = Path(location.removeprefix("file://")).resolve()
    assert path.is_relative_to(isolated_store.resolve())
