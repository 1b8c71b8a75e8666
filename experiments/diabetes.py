"""A regression task of your own: scikit-learn's diabetes table (442 patients, 10 features, shipped with it).

`data.name=experiments.diabetes:load task=regression`: the target, a measure of
disease progression one year on, is a whole number from 25 to 346. Under the
default `task=auto` the scaffold refuses to train it as 347 classes and says to
choose `task=regression`; there the targets are standardised with the training
part's statistics and every metric (rmse, mae, r2) is in the target's own units.
`studies/diabetes.yaml` is a study on it.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes


def load() -> tuple[np.ndarray, np.ndarray]:
    """(x, y): float features (already centred and scaled by scikit-learn) and the progression measure."""
    table = load_diabetes()
    return table.data.astype(np.float32), table.target.astype(np.float32)
