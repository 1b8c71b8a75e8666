"""Figures and text kept with a run: learning curves, a confusion matrix, predicted against true values and
residuals, config YAML."""

from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, never a window

import numpy as np  # noqa: E402
import yaml  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from core.config import Config  # noqa: E402


def config_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_flat(), sort_keys=True)


def learning_curves(history: list[dict[str, float]], title: str, metric: str = "acc") -> Figure:
    """Train and validation loss and the task's main metric (acc, rmse, ...) per epoch; a curve the history lacks
    (train_<metric> under a training step of the user's own) is left out."""
    epochs = np.arange(len(history))
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for key, style in (("train", "-"), ("val", "--")):
        loss_axis.plot(epochs, [h[f"{key}_loss"] for h in history], style, label=key)
        if history and f"{key}_{metric}" in history[0]:
            acc_axis.plot(epochs, [h[f"{key}_{metric}"] for h in history], style, label=key)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    acc_axis.set(xlabel="epoch", ylabel=metric, title=metric)
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


def predicted_vs_true(truth: np.ndarray, predicted: np.ndarray) -> Figure:
    """Regression: each test sample's prediction against its target (every output column), with the diagonal."""
    figure, axis = plt.subplots(figsize=(5.5, 5.5))
    axis.scatter(truth.ravel(), predicted.ravel(), s=8, alpha=0.6)
    low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
    axis.plot([low, high], [low, high], "k--", linewidth=1, label="predicted = true")
    axis.set(xlabel="true", ylabel="predicted", title="test set: predicted against true")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def residuals(truth: np.ndarray, predicted: np.ndarray) -> Figure:
    """Regression: residuals (predicted - true) against the prediction, and their histogram."""
    errors = (predicted - truth).ravel()
    figure, (scatter_axis, histogram_axis) = plt.subplots(1, 2, figsize=(10, 4))
    scatter_axis.scatter(predicted.ravel(), errors, s=8, alpha=0.6)
    scatter_axis.axhline(0, color="k", linestyle="--", linewidth=1)
    scatter_axis.set(xlabel="predicted", ylabel="predicted - true", title="residuals")
    histogram_axis.hist(errors, bins=30)
    histogram_axis.set(xlabel="predicted - true", ylabel="samples", title="residuals' distribution")
    for axis in (scatter_axis, histogram_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def remedy_curves(folds: dict, baseline: str = "baseline", metric: str = "acc") -> Figure:
    """One small panel per remedy, in the order given: its mean train (dashed) and validation (solid) metric per
    epoch against the baseline's (grey), with a band of one std over folds; eight overlaid remedies are unreadable."""
    names = [name for name in folds if name != baseline] or [baseline]
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.9 * rows), sharex=True, sharey=True,
                                squeeze=False)
    floors = []
    for axis, name in zip(axes.flat, names):
        if name != baseline:
            floors.append(_mean_curves(axis, folds[baseline], "0.55", baseline, metric))
        floors.append(_mean_curves(axis, folds[name], "C0", "remedy" if name != baseline else baseline, metric))
        axis.set_title(name, fontsize="medium")
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(names):]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel(metric)
    for axis in axes[-1]:
        axis.set_xlabel("epoch")
    if metric == "acc":  # the first epochs' climb would squash the plateau
        axes.flat[0].set_ylim(max(0.0, min(*floors, 1.0) - 0.02), 1.005)
    axes.flat[0].legend(fontsize="x-small", loc="best")
    caption = (f"mean over folds: validation (solid, band: one std) and train (dashed, running) {metric}; "
               f"grey: {baseline}; folds that stopped early leave the mean; the first epochs may start below the axis")
    # wrapped to the figure's width: one panel is 3.4 inches, and a longer line is cut off on both sides
    figure.suptitle(textwrap.fill(caption, width=int(14 * 3.4 * columns)), fontsize="medium")
    figure.tight_layout()
    return figure


def _mean_curves(axis, results: list, color: str, label: str, metric: str = "acc") -> float:
    """Plots the mean curves; returns the lowest mean (less one std) after the first fifth of the epochs."""
    floor = math.inf
    for key, style in ((f"val_{metric}", "-"), (f"train_{metric}", "--")):
        if not results[0].history or key not in results[0].history[0]:
            continue  # train_<metric> under a training step of the user's own
        length = max(len(r.history) for r in results)
        values = np.full((len(results), length), np.nan)
        for row, result in enumerate(results):  # early stopping ends folds at different epochs
            values[row, :len(result.history)] = [h[key] for h in result.history]
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        epochs = np.arange(length)
        axis.plot(epochs, mean, style, color=color, linewidth=1.2, label=f"{label} {key.split('_')[0]}")
        if key.startswith("val_"):
            axis.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, linewidth=0)
        floor = min(floor, float(np.nanmin((mean - std)[length // 5:])))
    return floor


def fold_box_plot(folds: dict, baseline: str = "baseline", metric: str = "acc") -> Figure:
    """Per remedy, over folds: the validation metric, its paired difference to the baseline on the same fold (what
    the test is about: the spread between folds cancels), and the generalization gap."""
    names = list(folds)
    figure, (val_axis, diff_axis, gap_axis) = plt.subplots(1, 3, figsize=(16, 4.5))
    val_axis.boxplot([[r.val for r in folds[n]] for n in names], tick_labels=names)
    others = [n for n in names if n != baseline]
    if others:
        diff_axis.boxplot([[r.val - b.val for r, b in zip(folds[n], folds[baseline])] for n in others],
                          tick_labels=others)
        diff_axis.axhline(0, color="0.4", linewidth=1)
    gap_axis.boxplot([[r.gap for r in folds[n]] for n in names], tick_labels=names)
    val_axis.set(title=f"validation {metric} per fold", ylabel=metric)
    diff_axis.set(title=f"validation {metric} - {baseline}'s\n(same fold)")
    gap_axis.set(title="generalization gap per fold\n(how much better on training than validation)")
    for axis in (val_axis, diff_axis, gap_axis):
        axis.tick_params(axis="x", rotation=45)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def strength_curve(name: str, key: str, points: list[tuple], baseline: list[float] | None = None,
                   metric: str = "acc") -> Figure:
    """The validation metric against a remedy's strength: every fold as a dot, the mean ± one std, and the
    baseline's mean and std as a line and band. `points` are (strength, the folds' validation values)."""
    values = [value for value, _ in points]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    positions = np.asarray(values if numeric else range(len(values)), dtype=float)
    logarithmic = numeric and (positions > 0).all() and positions.max() / positions.min() >= 100
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    if baseline is not None:
        mean, std = float(np.mean(baseline)), float(np.std(baseline, ddof=1)) if len(baseline) > 1 else 0.0
        axis.axhline(mean, color="0.4", linestyle="--", linewidth=1, label="baseline mean ± std")
        axis.axhspan(mean - std, mean + std, color="0.5", alpha=0.12)
    rng = np.random.default_rng(0)  # a fixed jitter: the same figure every time
    for position, (_, scores) in zip(positions, points):
        jitter = rng.uniform(-0.06, 0.06, len(scores))
        spread = position * 10 ** jitter if logarithmic else position + jitter * _step(positions)
        axis.scatter(spread, scores, s=10, color="C0", alpha=0.35, linewidths=0)
    means = [float(np.mean(scores)) for _, scores in points]
    stds = [float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0 for _, scores in points]
    axis.errorbar(positions, means, yerr=stds, color="C3", marker="o", capsize=4, label="mean ± std over folds")
    if logarithmic:
        axis.set_xscale("log")
    if not numeric:
        axis.set_xticks(positions, [str(v) for v in values])
    axis.set(title=f"{name}: strength vs validation {metric} (dots: folds)", xlabel=key, ylabel=f"validation {metric}")
    axis.legend(fontsize="small", loc="lower left")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _step(positions: np.ndarray) -> float:
    gaps = np.diff(np.sort(positions))
    return float(gaps[gaps > 0].min()) if (gaps > 0).any() else 1.0
