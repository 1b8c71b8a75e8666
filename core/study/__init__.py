"""Optuna studies where every trial is an MLflow run.

One MLflow experiment per study, one parent run for the study, one child run
per trial (with k-fold, the trial's run has one child per fold). The modules:

- `spec`: the study spec (base config, space, objective, sampler, pruner, budget, final phase), checked on load;
- `space`: the search space, parsed from YAML and sampled by a trial;
- `storage`: where Optuna keeps the study (journal, SQLite, PostgreSQL), and the lock that keeps workers in budget;
- `warm`: warm starts, configurations queued as the first trials (another study, a run, by hand);
- `trial`: one trial, trained (per fold) as MLflow runs, told to Optuna once;
- `outcome`: how a trial ended (complete, pruned, failed), as one value;
- `heartbeat`: a running trial's heartbeat on an RDB storage, from a thread of its own;
- `stopping`: the budget's stopping rules (target, patience), read from the storage;
- `runner`: the study's loop, in one process or N workers, then the final phase and the report;
- `report`: the study's parent run (best so far, the note, the trials table, plots, the served model);
- `plots`: Optuna's plots as HTML pages that share one plotly.js;
- `final`: the best configurations trained again on fresh seeds, the chosen one's median-seed run served;
- `nested`: the nested estimate, the whole study in each outer fold, scored on the held-out fold;
- `spread`: a score's mean, standard deviation and 95% t-interval over seeds or outer folds;
- `page`: the report page of a study and of a nested estimate (core/page.py writes it).

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
