"""A multi-label task of your own: several labels per sample, as a (N, C) matrix of 0/1.

`data.name=experiments.multilabel:load task=multilabel` trains with binary
cross-entropy (one logit per label); the served model returns one probability
per label; the metrics are micro and macro F1 at 0.5, mean average precision
and subset accuracy. The data is scikit-learn's `make_multilabel_classification`
(a fixed seed: the same set every time).
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import make_multilabel_classification


def load(samples: int = 1000, features: int = 20, labels: int = 5) -> tuple[np.ndarray, np.ndarray]:
    x, y = make_multilabel_classification(n_samples=samples, n_features=features, n_classes=labels,
                                          n_labels=2, random_state=0)
    return x.astype(np.float32), y.astype(np.float32)
