"""Figures and text kept with a run: learning curves, confusion matrix, config YAML."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from core.config import Config  # noqa: E402


def config_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_flat(), sort_keys=True)


def learning_curves(history: list[dict[str, float]], title: str) -> Figure:
    """Train and validation loss and accuracy per epoch."""
    epochs = np.arange(len(history))
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("train", "-"), ("val", "--")):
        loss_axis.plot(epochs, [h[f"{key}_loss"] for h in history], style, label=key)
        acc_axis.plot(epochs, [h[f"{key}_acc"] for h in history], style, label=key)
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for axis in (loss_axis, acc_axis):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> Figure:
    from sklearn.metrics import ConfusionMatrixDisplay

    figure, axis = plt.subplots(figsize=(6, 6))
    ConfusionMatrixDisplay.from_predictions(truth, predicted, labels=list(range(num_classes)), ax=axis,
                                            colorbar=False)
    axis.set_title("test set")
    figure.tight_layout()
    return figure


def remedy_curves(folds: dict) -> Figure:
    """Mean train and validation accuracy per epoch for each remedy, with a band of one std over folds."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for index, (name, results) in enumerate(folds.items()):
        color = f"C{index % 10}"
        for axis, key in zip(axes, ("train_acc", "val_acc")):
            length = max(len(r.history) for r in results)
            values = np.full((len(results), length), np.nan)
            for row, result in enumerate(results):  # early stopping ends folds at different epochs
                values[row, :len(result.history)] = [h[key] for h in result.history]
            mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
            epochs = np.arange(length)
            axis.plot(epochs, mean, color=color, label=name)
            axis.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.15)
    axes[0].set(title="train accuracy (running, per epoch)", xlabel="epoch", ylabel="accuracy")
    axes[1].set(title="validation accuracy", xlabel="epoch")
    axes[1].legend(fontsize="small", loc="lower right")
    for axis in axes:
        axis.grid(alpha=0.3)
    figure.suptitle("mean over folds, band: one standard deviation")
    figure.tight_layout()
    return figure


def fold_box_plot(folds: dict) -> Figure:
    """Validation accuracy and generalization gap of every fold, per remedy."""
    names = list(folds)
    figure, (val_axis, gap_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    val_axis.boxplot([[r.val_acc for r in folds[n]] for n in names], tick_labels=names)
    gap_axis.boxplot([[r.gap for r in folds[n]] for n in names], tick_labels=names)
    val_axis.set(title="validation accuracy per fold", ylabel="accuracy")
    gap_axis.set(title="generalization gap per fold (train - validation)")
    for axis in (val_axis, gap_axis):
        axis.tick_params(axis="x", rotation=45)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def strength_curve(name: str, key: str, points: list[tuple[float, float, float]]) -> Figure:
    """Mean validation accuracy (± std over folds) against a remedy's strength."""
    strengths, means, stds = (np.asarray(column, dtype=float) for column in zip(*points))
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.errorbar(strengths, means, yerr=stds, marker="o", capsize=3)
    if (strengths > 0).all() and strengths.max() / strengths.min() >= 100:
        axis.set_xscale("log")
    axis.set(title=f"{name}: strength vs validation accuracy", xlabel=key, ylabel="validation accuracy")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
