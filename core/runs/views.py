"""A saved view of the MLflow UI's runs table: the columns it shows, kept in the store.

MLflow 3.17's UI keeps the runs table's columns per browser (local storage), except for its "saved views":
an experiment tag `mlflow.sharedViewState.<id>` holding `{name, createdAt, updatedAt, state}`, where
`state` is the view as JSON (`selectedColumns`: e.g. "tags.`state`", "metrics.`summary/final_val_acc`"),
opened by the URL `#/experiments/<id>/runs?viewStateShareKey=<id>` and listed under the table's "Views".
A study saves one, so the printed link shows each trial's state and score without adding columns by hand.
"""

from __future__ import annotations

import json
import time

from core.tracking import mlflow_store

TAG_PREFIX = "mlflow.sharedViewState."  # the UI's own (its bundle's constant), read by its saved-views menu
URL_KEY = "viewStateShareKey"  # the URL parameter that opens a saved view
STUDY_VIEW = "core-study"  # the view a study saves of its runs table (`python -m core ui` links to it)


def save_columns(experiment: str, view_id: str, name: str, columns: list[str]) -> None:
    """Keep (or replace) the view `view_id` of the experiment's runs table: these columns, e.g. tag("state")."""
    now = int(time.time() * 1000)
    envelope = {"name": name, "createdAt": now, "updatedAt": now, "state": json.dumps({"selectedColumns": columns})}
    mlflow_store.client().set_experiment_tag(mlflow_store.experiment_id(experiment), TAG_PREFIX + view_id,
                                             json.dumps(envelope))


def has_view(experiment_id: str, view_id: str) -> bool:
    return TAG_PREFIX + view_id in mlflow_store.client().get_experiment(experiment_id).tags


def tag(key: str) -> str:
    """A tag's column, as the UI names it."""
    return f"tags.`{key}`"


def metric(key: str) -> str:
    return f"metrics.`{key}`"
