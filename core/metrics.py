"""Extra metrics of a run (`track.metrics`), computed on the validation and test predictions at its end.

Built-ins (classification) come from scikit-learn; the user's own are
`module:function`, called as `function(y_true, y_pred, predictions)` and
returning a number: y_pred is the class (regression: the value; multi-label: the
0/1 labels) and predictions what the served model returns (class or label
probabilities; values in the targets' units). Each is
logged as `final_val_<name>` and `test_<name>` (the name of `module:score` is
`score`), like `final_val_acc` and `test_acc`, and `val_<name>` can be a
study's objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from sklearn import metrics as sk

from core import user_code
from core.config import metric_name
from core.errors import UserError
from core.tasks import Task

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]

BUILTIN: dict[str, Metric] = {
    "macro_f1": lambda y, p, proba: sk.f1_score(y, p, average="macro", zero_division=0),
    "weighted_f1": lambda y, p, proba: sk.f1_score(y, p, average="weighted", zero_division=0),
    "balanced_accuracy": lambda y, p, proba: sk.balanced_accuracy_score(y, p),
    "cohen_kappa": lambda y, p, proba: sk.cohen_kappa_score(y, p),
    "matthews_corrcoef": lambda y, p, proba: sk.matthews_corrcoef(y, p),
    "log_loss": lambda y, p, proba: sk.log_loss(y, proba, labels=np.arange(proba.shape[1])),
}


def resolve(metric: str) -> Metric:
    return user_code.load(metric, "track.metrics") if user_code.is_reference(metric) else BUILTIN[metric]


def score(metrics: list[str], y_true: np.ndarray, predictions: np.ndarray, prefix: str, task: Task) -> dict[str, float]:
    """`{prefix + name: value}` of each metric on these targets and the task's predictions."""
    y_pred, probabilities = task.hard(predictions), predictions
    values = {}
    for metric in metrics:
        try:
            value = resolve(metric)(y_true, y_pred, probabilities)
        except UserError:
            raise
        except Exception as error:  # the user's code: one line, naming the metric
            raise UserError(f"track.metrics: {metric} raised {type(error).__name__}: {error}") from None
        if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not math.isfinite(value):
            raise UserError(f"track.metrics: {metric} returned {value!r}, not a finite number")
        values[f"{prefix}{metric_name(metric)}"] = float(value)
    return values


def check(metrics: list[str], task: Task, y_true: np.ndarray, predictions: np.ndarray) -> None:
    """Call every metric once on a few samples and the untrained model's predictions, so a broken one fails
    before any run."""
    score(metrics, y_true, predictions, "", task)
