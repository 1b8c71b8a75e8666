"""Stopping rules of a study's budget, read from the storage so that every worker agrees.

    budget: {trials: 100, target: 0.98}                 stop once the best value reaches 0.98
    budget: {trials: 100, patience: 10, min_delta: 0.001}  stop after 10 finished trials that did not
                                                        improve the best by at least 0.001
"""

from __future__ import annotations

import optuna

from core.study.spec import StudySpec


def stopped_by(spec: StudySpec, study: optuna.Study) -> tuple[str, str] | None:
    """(rule, what happened) when a rule says the study is done, else None. Directions are the spec's."""
    if spec.target is None and spec.patience is None:
        return None
    states = optuna.trial.TrialState
    finished = study.get_trials(deepcopy=False, states=(states.COMPLETE, states.PRUNED))
    finished.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
    maximize = spec.directions[0] == "maximize"
    best, since = None, 0
    for trial in finished:
        value = trial.value if trial.state == states.COMPLETE else None
        if value is not None and (best is None or (value - best if maximize else best - value) >= spec.min_delta):
            best, since = value, 0
        else:
            since += 1
        if value is not None and best is not None and (value > best if maximize else value < best):
            best = value  # a smaller improvement still moves the best, without resetting the patience
    metric = spec.metrics[0]
    if spec.target is not None and best is not None and (best >= spec.target if maximize else best <= spec.target):
        return "target", f"best {metric} {best:.4g} reached the target {spec.target:g}"
    if spec.patience is not None and since >= spec.patience:
        return "patience", (f"{since} finished trials without improving the best {metric} "
                            f"by at least {spec.min_delta:g}")
    return None
