"""Optuna studies where every trial is an MLflow run.

One MLflow experiment per study, one parent run for the study, one child run
per trial (with k-fold, the trial's run has one child per fold). The modules:

- `spec`: the study spec (base config, space, objective, sampler, pruner, budget), checked on load;
- `space`: the search space, parsed from YAML and sampled by a trial;
- `storage`: where Optuna keeps the study, and the lock that keeps workers within the budget;
- `trial`: one trial, trained (per fold) as MLflow runs;
- `runner`: the study's loop, in one process or N workers;
- `report`: the study's parent run (best so far, trials table, plots, the best model).
- `plots`: Optuna's plots as HTML pages that share one plotly.js.

`load_spec` and `run_study` are re-exported here, loaded on first use: the
package pulls in Optuna and torch, which the CLI imports only once a command runs.
"""

DEFAULT_STORAGE = "mlruns/optuna.journal"  # as shown; default_storage() is the file in the nearest mlruns/


# a storage URL from the environment: a launched worker's (core.launch), never on its command line where a
# password in the URL would be readable by every user of the node (ps, /proc/PID/cmdline)
STORAGE_VARIABLE = "CORE_STUDY_STORAGE"


def default_storage() -> str:
    """$CORE_STUDY_STORAGE, else the journal file in the nearest mlruns/ from the current folder up
    (core.store_dir), as a path."""
    import os

    from core.store_dir import store_dir

    return os.environ.get(STORAGE_VARIABLE) or str(store_dir() / "optuna.journal")


_EXPORTS = {"load_spec": "core.study.spec", "trial_seed": "core.study.spec", "StudySpec": "core.study.spec",
            "run_study": "core.study.runner", "StudyOutcome": "core.study.report"}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'core.study' has no attribute {name!r}")


__all__ = ["DEFAULT_STORAGE", "default_storage", "StudyOutcome", "StudySpec", "load_spec", "run_study", "trial_seed"]
