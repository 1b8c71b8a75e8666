"""Where the project's store is: the nearest `mlruns/` in the current folder or above it, as git finds `.git`.

So a command run from a subfolder of the project (a notebook's folder, experiments/) uses the project's
store instead of starting an empty one there. Without one anywhere above, it is `./mlruns`, and making it
is said once (a logging warning): a store started by mistake is seen at once. MLFLOW_TRACKING_URI, when
set, chooses the MLflow store itself (core.tracking.mlflow_store); the Optuna journal, Visdom's files and
checkpoints stay in this folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

NAME = "mlruns"
log = logging.getLogger(__name__)


def store_dir() -> Path:
    """The nearest mlruns/ folder from the current folder up to the root; ./mlruns (not made) when none."""
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / NAME).is_dir():
            return folder / NAME
    return here / NAME


def make_folder(folder: Path) -> None:
    """mkdir -p `folder`; when that starts a new store of our own finding (no MLFLOW_TRACKING_URI), say where."""
    store = store_dir()
    new = not store.exists() and (folder.resolve() == store or store in folder.resolve().parents)
    folder.mkdir(parents=True, exist_ok=True)
    if new and not os.environ.get("MLFLOW_TRACKING_URI"):
        log.warning("new store %s: there is no %s/ in this folder or above it (run from the project's folder "
                    "to use its store)", store, NAME)
