"""What is learnt: classification, regression or multi-label, as one object per run.

A task owns everything that depends on what the targets are: which targets it
accepts (and which task to use instead), the model's output width, the loss,
the metrics of each epoch and of the returned model, predictions from the
model's outputs (the head the served model ends with), how splits stratify and
the figures. The trainer, the run record, serving, studies and `compare` ask the
run's task; none of them tests for a task by name or assumes accuracy.
`core.names.TASKS` names each task's losses and metrics (torch-free, for config
and spec checks); this module is what they do.

- classification: integer labels 0..C-1, C outputs (logits), cross-entropy (with
  `train.label_smoothing`), accuracy; predictions are class probabilities.
- regression: float targets (N,) or (N, D), D outputs; the loss (mse, l1, huber)
  is taken on targets standardised with the training part's statistics, which
  the task keeps (and the served model holds), so predictions and metrics are in
  the targets' own units: rmse, mae, r2.
- multilabel: a (N, C) matrix of 0/1, C outputs (logits), binary cross-entropy;
  predictions are one probability per label; micro and macro F1 at 0.5, mean
  average precision, subset accuracy.

`train.loss=module:function` replaces the loss: `function(outputs, targets)`
with the targets as the loss sees them (class indices; standardised values;
0/1 floats), returning a scalar tensor. It is tried on two samples when the run
is prepared.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core import names, user_code
from core.config import Config, DataConfig
from core.errors import DataError, UserError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Whole-number targets look like classes under task=auto only if they are 0..C-1 and, with this many classes
# or more, at least half of them have FEW_SAMPLES training samples or more (scikit-learn's diabetes targets,
# 25..346 with one to three samples each, are values).
MANY_CLASSES, FEW_SAMPLES = 20, 5


def data_config(config: Config) -> DataConfig:
    """The data config to load: the synthetic set's targets follow the task unless data.targets says otherwise."""
    if config.data.targets != "auto":
        return config.data
    return dataclasses.replace(config.data, targets=TASKS[resolved(config.task)].synthetic_targets)


def resolved(task: str) -> str:
    return "classification" if task == "auto" else task


def for_run(config: Config, train_y: torch.Tensor, test_y: torch.Tensor) -> Task:
    """The run's task, its targets checked (a DataError naming the task to use) and its loss built."""
    task = TASKS[resolved(config.task)](config)
    task.check_targets(train_y, test_y, f"data.name={config.data.name}")
    task.criterion = task.loss()
    return task


class Task(ABC):
    """What every task answers (the abstract methods each task defines); the subclasses below are the three
    built-in ones."""

    name = ""
    synthetic_targets = ""  # what data.name=synthetic makes for this task (data.targets)

    def __init__(self, config: Config):
        self.config = config
        self.names = names.TASKS[self.name]
        self.outputs = 0  # the model's output width, set by check_targets
        self.criterion: Loss = self.builtin_loss(self.names.losses[0])  # the run's loss, set by for_run

    # ---- targets ----------------------------------------------------------
    @abstractmethod
    def check_targets(self, train_y: torch.Tensor, test_y: torch.Tensor, source: str) -> None:
        """Refuse targets the task cannot learn (a DataError naming the task to use); set `outputs`."""

    def fit(self, train_y: torch.Tensor) -> None:
        """Learn what the task needs from the training part's targets (regression: their statistics)."""
        return  # classification and multi-label learn nothing from them

    def strata(self, y: np.ndarray) -> np.ndarray | None:
        """What a stratified split keeps the shares of (class labels); None: splits are not stratified."""
        return y if self.names.stratified else None

    def model_targets(self, y: torch.Tensor) -> torch.Tensor:
        """The targets as the loss compares them with the model's outputs."""
        return y

    # ---- training ---------------------------------------------------------
    def loss(self) -> Loss:
        """The run's loss: train.loss (auto: the task's first), or the user's function."""
        chosen = self.config.train.loss
        if user_code.is_reference(chosen):
            return user_code.load(chosen, "train.loss")
        return self.builtin_loss(self.names.losses[0] if chosen == "auto" else chosen)

    @abstractmethod
    def builtin_loss(self, name: str) -> Loss:
        """The built-in loss `name` (one of names.TASKS[task].losses)."""

    @abstractmethod
    def tally(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Sums over a batch (on the device: no sync) from which `from_tally` makes the epoch's metrics."""

    @abstractmethod
    def from_tally(self, sums: torch.Tensor, count: int) -> dict[str, float]:
        """The epoch's metrics (plain names: acc, rmse, ...) from the summed tallies of `count` samples."""

    # ---- predictions --------------------------------------------------------
    @abstractmethod
    def head(self) -> nn.Module:
        """Outputs -> predictions: what `predict` and the served model return."""

    def final_scores(self, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        """The metrics of the returned model that the epoch tally does not give (r2, macro_f1, map)."""
        return {}

    def hard(self, predictions: np.ndarray) -> np.ndarray:
        """Predictions as a user metric's y_pred: the class, the value, the 0/1 labels."""
        return predictions

    def figures(self, y: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
        """File name -> figure of the test part's predictions."""
        return {}

    def served_output(self) -> str:
        return "predictions"

    def record(self) -> dict[str, Any]:
        """What the run keeps of the task beyond its config (regression: the targets' statistics)."""
        return {"task": self.name, "outputs": self.outputs}


class Classification(Task):
    name = "classification"
    synthetic_targets = "classes"

    def check_targets(self, train_y: torch.Tensor, test_y: torch.Tensor, source: str) -> None:
        if train_y.dim() != 1:
            raise DataError(f"{source}: the targets are a {list(train_y.shape[1:])}-wide matrix per sample, not class "
                            f"labels; use task=multilabel (0/1 per label) or task=regression (values)")
        if train_y.is_floating_point():
            example = train_y[torch.remainder(train_y, 1) != 0][0].item()
            raise DataError(f"{source}: the targets are real numbers (e.g. {example:g}), not class labels 0..C-1; "
                            f"use task=regression")
        labels = torch.cat([train_y, test_y]).cpu()
        classes = int(labels.max()) + 1
        if labels.min() < 0 or classes < 2:
            raise DataError(f"{source}: class labels must be 0..C-1 with C >= 2, got {int(labels.min())}.."
                            f"{int(labels.max())}")
        if self.config.task == "auto":
            self._looks_like_classes(train_y.cpu(), classes, source)
        self.outputs = classes

    def _looks_like_classes(self, train_y: torch.Tensor, classes: int, source: str) -> None:
        counts = torch.bincount(train_y, minlength=classes)
        missing = int((counts == 0).sum())
        sparse = classes >= MANY_CLASSES and int((counts < FEW_SAMPLES).sum()) > classes / 2
        if missing or sparse:
            why = (f"{missing} of 0..{classes - 1} never occur" if missing else
                   f"most of the {classes} classes have fewer than {FEW_SAMPLES} training samples")
            raise DataError(f"{source}: the whole-number targets ({int(train_y.min())}..{int(train_y.max())}) do not "
                            f"look like class labels ({why}); use task=regression for values, or task=classification "
                            f"to train them as classes anyway")

    def builtin_loss(self, name: str) -> Loss:
        return nn.CrossEntropyLoss(label_smoothing=self.config.train.label_smoothing)

    def tally(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (outputs.argmax(dim=1) == y).sum().reshape(1).float()

    def from_tally(self, sums: torch.Tensor, count: int) -> dict[str, float]:
        return {"acc": sums[0].item() / max(count, 1)}

    def head(self) -> nn.Module:
        return nn.Softmax(dim=1)

    def hard(self, predictions: np.ndarray) -> np.ndarray:
        return predictions.argmax(axis=1)

    def figures(self, y: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
        from core import report

        return {"confusion_matrix.png": report.confusion_matrix(y, self.hard(predictions), self.outputs)}

    def served_output(self) -> str:
        return "probabilities"


class Standardised(nn.Module):
    """Standardised outputs back in the targets' units: outputs * std + mean (the regression head)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    def forward(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float() * self.std + self.mean


class Regression(Task):
    name = "regression"
    synthetic_targets = "values"
    LOSSES = {"mse": nn.MSELoss, "l1": nn.L1Loss, "huber": nn.HuberLoss}

    def check_targets(self, train_y: torch.Tensor, test_y: torch.Tensor, source: str) -> None:
        if train_y.dim() > 2:
            raise DataError(f"{source}: regression targets are (N,) or (N, D), got {list(train_y.shape)}")
        self.outputs = 1 if train_y.dim() == 1 else train_y.shape[1]
        self.mean = torch.zeros(self.outputs)
        self.std = torch.ones(self.outputs)

    def fit(self, train_y: torch.Tensor) -> None:
        values = self.as_matrix(train_y).double()
        self.mean = values.mean(dim=0).float()
        std = values.std(dim=0, unbiased=False).float()
        self.std = torch.where(std > 0, std, torch.ones_like(std))  # a constant target: left as it is

    def as_matrix(self, y: torch.Tensor) -> torch.Tensor:
        return y.float().reshape(len(y), -1)

    def model_targets(self, y: torch.Tensor) -> torch.Tensor:
        return (self.as_matrix(y) - self.mean.to(y.device)) / self.std.to(y.device)

    def builtin_loss(self, name: str) -> Loss:
        return self.LOSSES[name]()

    def tally(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        error = outputs.float() * self.std.to(y.device) + self.mean.to(y.device) - self.as_matrix(y)
        return torch.stack([error.square().mean(dim=1).sum(), error.abs().mean(dim=1).sum()])

    def from_tally(self, sums: torch.Tensor, count: int) -> dict[str, float]:
        squared, absolute = (sums / max(count, 1)).tolist()
        return {"rmse": math.sqrt(squared), "mae": absolute}

    def head(self) -> nn.Module:
        return Standardised(self.mean, self.std)

    def final_scores(self, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import r2_score

        return {"r2": float(r2_score(y.reshape(len(y), -1), predictions))}

    def hard(self, predictions: np.ndarray) -> np.ndarray:
        return predictions[:, 0] if predictions.shape[1] == 1 else predictions

    def figures(self, y: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
        from core import report

        return {"predicted_vs_true.png": report.predicted_vs_true(y.reshape(len(y), -1), predictions),
                "residuals.png": report.residuals(y.reshape(len(y), -1), predictions)}

    def record(self) -> dict[str, Any]:
        return {**super().record(), "target_mean": self.mean.tolist(), "target_std": self.std.tolist()}


class Multilabel(Task):
    name = "multilabel"
    synthetic_targets = "labels"

    def check_targets(self, train_y: torch.Tensor, test_y: torch.Tensor, source: str) -> None:
        if train_y.dim() != 2:
            raise DataError(f"{source}: multilabel targets are a (N, C) matrix of 0/1, got shape "
                            f"{list(train_y.shape)}; a vector of class labels is task=classification")
        labels = torch.cat([train_y, test_y])
        if not bool(((labels == 0) | (labels == 1)).all()):
            raise DataError(f"{source}: multilabel targets must be 0 or 1, got e.g. "
                            f"{labels[(labels != 0) & (labels != 1)][0].item():g}; use task=regression for values")
        self.outputs = train_y.shape[1]

    def model_targets(self, y: torch.Tensor) -> torch.Tensor:
        return y.float()

    def builtin_loss(self, name: str) -> Loss:
        return nn.BCEWithLogitsLoss()

    def tally(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        predicted, truth = outputs > 0, y > 0.5
        return torch.stack([(predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum(),
                            (predicted == truth).all(dim=1).sum()]).float()

    def from_tally(self, sums: torch.Tensor, count: int) -> dict[str, float]:
        true_pos, false_pos, false_neg, exact = sums.tolist()
        counted = 2 * true_pos + false_pos + false_neg
        return {"micro_f1": 2 * true_pos / counted if counted else 0.0, "subset_acc": exact / max(count, 1)}

    def head(self) -> nn.Module:
        return nn.Sigmoid()

    def hard(self, predictions: np.ndarray) -> np.ndarray:
        return (predictions > 0.5).astype(np.int64)

    def final_scores(self, y: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
        from sklearn.metrics import average_precision_score, f1_score

        truth = y.astype(np.int64)
        present = truth.sum(axis=0) > 0  # average precision is undefined for a label that never occurs
        mean_ap = average_precision_score(truth[:, present], predictions[:, present], average="macro") \
            if present.any() else 0.0
        return {"macro_f1": float(f1_score(truth, self.hard(predictions), average="macro", zero_division=0)),
                "map": float(mean_ap)}

    def served_output(self) -> str:
        return "probabilities"


TASKS: dict[str, type[Task]] = {task.name: task for task in (Classification, Regression, Multilabel)}


@dataclass
class StepContext:
    """What a training step of the user's own (`train.step`) gets besides model, inputs and targets.

    `generator` is the run's seeded generator on the device: draw random numbers (mixup's lambda, a
    permutation) from it and the run reproduces bit for bit. `loss` is the run's loss (train.loss)."""

    epoch: int
    step: int
    generator: torch.Generator
    loss: Loss


def check_loss(loss: Loss, outputs: torch.Tensor, targets: torch.Tensor, name: str) -> None:
    """A dry call of the user's loss on two samples: it must give a scalar tensor."""
    try:
        value = loss(outputs, targets)
    except Exception as error:
        raise UserError(f"train.loss={name}: a call on outputs {list(outputs.shape)} and targets "
                        f"{list(targets.shape)} raised {type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        got = f"a tensor of shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise UserError(f"train.loss={name}: returned {got} for two samples; it must return a scalar tensor "
                        f"(e.g. .mean() of the per-sample losses)")


def check_step(step: Callable[..., Any], model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss: Loss,
               name: str) -> None:
    """A dry call of the user's training step on two samples, on a copy of the model (its weights and the
    optimizer are not touched): it must give a scalar tensor."""
    import copy

    context = StepContext(epoch=0, step=0, generator=torch.Generator(device=inputs.device).manual_seed(0), loss=loss)
    try:
        value = step(copy.deepcopy(model).train(), inputs, targets, context)
    except Exception as error:
        raise UserError(f"train.step={name}: a call on inputs {list(inputs.shape)} raised "
                        f"{type(error).__name__}: {_first_line(error)}") from None
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        got = f"a tensor of shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
        raise UserError(f"train.step={name}: returned {got} for two samples; it must return the batch's loss as a "
                        f"scalar tensor")


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
