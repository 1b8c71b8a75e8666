"""Data of your own, two ways.

1. A loader: `data.name=experiments.my_data:load data.args.name=wine` calls
   `load(name="wine")`, which returns (x, y) as NumPy arrays; with no test part
   the scaffold keeps a fixed stratified 20% aside (data.test_fraction).
2. An .npz file: `python -m experiments.my_data wine.npz` writes one with arrays
   x_train, y_train, x_test, y_test; then `data.name=npz data.path=wine.npz`.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split

TABLES = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer, "iris": datasets.load_iris}


def load(name: str = "wine") -> tuple[np.ndarray, np.ndarray]:
    """One of scikit-learn's small tables (shipped with it): float features, integer classes."""
    if name not in TABLES:
        raise ValueError(f"unknown table {name!r}; one of {', '.join(TABLES)}")
    table = TABLES[name]()
    return table.data.astype(np.float32), table.target.astype(np.int64)


def save_npz(path: str, name: str = "wine") -> None:
    x, y = load(name)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


if __name__ == "__main__":
    save_npz(sys.argv[1] if len(sys.argv) > 1 else "wine.npz")
