"""The store is found as git finds .git: the nearest mlruns/ from the current folder up."""

from __future__ import annotations

import logging

import core
from core import resume, visdom_server
from core.store_dir import store_dir
from core.study import default_storage
from core.study.storage import open_storage
from core.tracking import mlflow_store


def test_a_subfolder_of_a_project_uses_the_projects_store(tmp_path, monkeypatch, caplog):
    project = tmp_path / "project"
    (project / "mlruns").mkdir(parents=True)
    (project / "notebooks" / "week 1").mkdir(parents=True)
    monkeypatch.chdir(project / "notebooks" / "week 1")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    store = project / "mlruns"
    assert store_dir() == store
    assert mlflow_store.tracking_uri() == f"sqlite:///{store / 'mlflow.db'}"
    assert default_storage() == str(store / "optuna.journal")
    assert visdom_server.env_folder() == store / "visdom"
    assert resume.checkpoint_file("abc").parent == store / "checkpoints"
    with caplog.at_level(logging.WARNING):
        open_storage(default_storage())  # an existing store: nothing to say
    assert (store / "optuna.journal").exists() and not caplog.records


def test_the_tracking_uri_chooses_the_mlflow_store_and_a_new_store_is_announced(tmp_path, monkeypatch, caplog):
    assert mlflow_store.tracking_uri() == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"  # the conftest's
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere/mlflow.db")
    assert mlflow_store.tracking_uri() == "sqlite:////elsewhere/mlflow.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with caplog.at_level(logging.WARNING, logger="core.store_dir"):
        open_storage(default_storage())
        open_storage(default_storage())
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"new store {tmp_path / 'mlruns'}"]


def test_tracked_fit_is_exported_beside_fit():
    from core.runs import tracked_fit

    assert core.tracked_fit is tracked_fit and "tracked_fit" in core.__all__
