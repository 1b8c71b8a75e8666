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
