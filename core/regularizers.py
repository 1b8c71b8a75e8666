"""Remedies for overfitting that live outside the model.

Dropout and BatchNorm are layers (see models.py); here are the L1 penalty, L2
as weight decay on the right parameters, and early stopping.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def decayed_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(weights, the rest): weights are matrices and kernels; biases and norm scales are the rest."""
    weights, others = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (weights if parameter.dim() > 1 else others).append(parameter)
    return weights, others


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer groups that apply L2 weight decay to weights only."""
    weights, others = decayed_parameters(model)
    return [{"params": weights, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]


class L1Penalty:
    """lambda * sum(|w|) over the weights (not the biases) of a model."""

    def __init__(self, model: nn.Module, strength: float):
        self.strength = strength
        self.weights, _ = decayed_parameters(model)

    def __call__(self) -> torch.Tensor:
        return self.strength * torch.stack([w.abs().sum() for w in self.weights]).sum()


class EarlyStopping:
    """Stop when the watched value (lower is better) has not improved for `patience` epochs.

    Keeps a copy of the best weights, when it may stop (patience > 0), and `restore` puts them back into the
    model; with patience 0 it only tracks the best epoch (a copy per improving epoch would cost for nothing).
    """

    def __init__(self, patience: int, min_delta: float = 0.0):
        self.patience = patience
        self.min_delta = min_delta
        self.best_value = float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.bad_epochs = 0

    def step(self, value: float, epoch: int, model: nn.Module) -> bool:
        """Record this epoch's value; True when training should stop."""
        if value < self.best_value - self.min_delta:
            self.best_value, self.best_epoch, self.bad_epochs = value, epoch, 0
            if self.patience > 0:
                self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        """What a checkpoint keeps so that a resumed run stops (and restores) exactly as an uninterrupted one."""
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs,
                "best_state": self.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best_value, self.best_epoch = float(state["best_value"]), int(state["best_epoch"])
        self.bad_epochs, self.best_state = int(state["bad_epochs"]), state["best_state"]

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
