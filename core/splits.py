"""Train/validation splits of the training part, as index arrays.

Pure functions of (labels, seed, k): the same inputs give the same indices in
every process. The test part of a data set is never split. `labels` are the
run's task's strata (class labels), or None where the task has none
(regression, multi-label): then nothing is stratified.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from core.config import SplitConfig
from core.errors import ConfigError

Split = tuple[np.ndarray, np.ndarray]  # (train indices, validation indices), sorted


def holdout(labels: np.ndarray, val_fraction: float, seed: int, stratify: bool = True) -> Split:
    labels = np.asarray(labels)
    n_val = int(round(len(labels) * val_fraction))
    if n_val < 1 or n_val >= len(labels):
        raise ConfigError(f"split.val_fraction={val_fraction} leaves no training or validation sample "
                          f"out of {len(labels)}")
    stratify_on = labels if stratify and _can_stratify(labels, n_val) else None
    train, val = train_test_split(np.arange(len(labels)), test_size=n_val, random_state=seed, stratify=stratify_on)
    return np.sort(train), np.sort(val)


def kfold(labels: np.ndarray, k: int, seed: int, stratified: bool = False) -> list[Split]:
    """All k folds; fold i's validation part is the i-th k-th of the data."""
    labels = np.asarray(labels)
    if k > len(labels):
        raise ConfigError(f"split.k={k} is more than the {len(labels)} training samples")
    if stratified:
        present = np.bincount(labels)
        smallest = present[present > 0].min()
        if k > smallest:
            raise ConfigError(f"split.k={k} is more than the {smallest} samples of the rarest class; "
                              f"use a smaller k or split.kind=kfold")
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(np.sort(train), np.sort(val)) for train, val in splitter.split(np.zeros(len(labels)), labels)]


def make_split(samples: int, strata: np.ndarray | None, config: SplitConfig, seed: int) -> Split:
    """The (train, validation) indices `config` asks for, of `samples` samples stratified on `strata` (None: the
    task's targets have no classes to stratify on)."""
    if strata is None and config.kind == "stratified_kfold":
        raise ConfigError("split.kind=stratified_kfold keeps each class's share, and this task's targets have no "
                          "classes; use split.kind=kfold")
    labels = np.zeros(samples, dtype=np.int64) if strata is None else strata
    if config.kind == "holdout":
        return holdout(labels, config.val_fraction, seed, config.stratify and strata is not None)
    return kfold(labels, config.k, seed, stratified=config.kind == "stratified_kfold")[config.fold]


def outer_split(samples: int, strata: np.ndarray | None, config: SplitConfig) -> Split:
    """A nested estimate's outer fold of the training part: (the part its study searches on, the held-out part
    that scores the configuration that study selects). Stratified when the task has classes (and enough of each)."""
    if config.outer_k * 2 > samples:
        raise ConfigError(f"split.outer_k={config.outer_k} (--outer-folds) leaves fewer than 2 samples per outer "
                          f"fold of the {samples} training samples")
    labels = np.zeros(samples, dtype=np.int64) if strata is None else strata
    stratified = strata is not None and np.bincount(labels)[np.bincount(labels) > 0].min() >= config.outer_k
    return kfold(labels, config.outer_k, config.outer_seed, stratified=stratified)[config.outer_fold]


def _can_stratify(labels: np.ndarray, n_val: int) -> bool:
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return counts.min() >= 2 and n_val >= len(counts) and len(labels) - n_val >= len(counts)
