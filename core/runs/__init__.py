"""The one owner of an MLflow run: where it sits, how it opens and ends, what it records.

- `place.py`  where a run sits (experiment, name, parent, tags, live-view label) as one value;
- `run.py`    `open_run(place)`, the one function that opens runs (and reopens a resumed study's or comparison's),
              ending each FINISHED, FAILED or KILLED with its `state` tag written before it closes; `Run`,
              the handle callers log through; the store's run-wide sweeps (stale runs, a dead trial's tree);
- `record.py` what a training run records: its inputs (params, tags, user code, data set, config.yaml)
              and its outcome (summary metrics, stop, figures, weights, the served model);
- `fit.py`    `tracked_fit(config, place, hooks, resume)`: prepare, open, train, record;
- `folds.py`  a group run with a child run per fold: a study's K-fold trial and a comparison's remedy (whose
              finished folds a resumed comparison reuses);
- `logged.py` reading a logged run back: its config, its weights, a finished fit; finding runs by tag.

Nothing outside this package (and `core/tracking/`) opens a run or imports the MLflow store to write one.
"""

from core.runs.fit import FitHooks, TrackedRun, fit_in, tracked_fit
from core.runs.folds import FoldPlan, fit_folds
from core.runs.place import Place
from core.runs.run import Run, open_run

__all__ = ["FitHooks", "FoldPlan", "Place", "Run", "TrackedRun", "fit_folds", "fit_in", "open_run", "tracked_fit"]
