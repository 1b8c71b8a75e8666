"""A metric of your own: `track.metrics=[macro_f1, experiments.my_metrics:worst_class_recall]`.

The scaffold calls it with the true labels, the predicted labels and the class
probabilities of the validation and the test part, and logs the number it
returns as `final_val_worst_class_recall` and `test_worst_class_recall`.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import recall_score


def worst_class_recall(y_true: np.ndarray, y_pred: np.ndarray, probabilities: np.ndarray) -> float:
    """The recall of the class the model finds hardest."""
    labels = np.arange(probabilities.shape[1])
    return float(recall_score(y_true, y_pred, labels=labels, average=None, zero_division=0).min())
