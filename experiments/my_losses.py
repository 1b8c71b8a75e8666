"""Losses and training steps of your own.

A loss: `train.loss=experiments.my_losses:focal` is called as
`focal(outputs, targets)` with the model's outputs and the targets as the loss
sees them (class indices for classification; standardised values for
regression; 0/1 floats for multi-label) and returns a scalar tensor.

A training step: `train.step=experiments.my_losses:mixup` is called as
`mixup(model, inputs, targets, context)` for each batch and returns its loss;
the scaffold does the rest (L1/L2, the optimizer, the schedule, mixed precision,
checkpoints, tracking). Draw random numbers from `context.generator`, the run's
seeded generator, and the run reproduces bit for bit; `context.loss` is the
run's loss (train.loss), `context.epoch` and `context.step` say where training is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal(outputs: torch.Tensor, targets: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss (Lin et al. 2017) for classification: cross-entropy that down-weights easy samples."""
    log_p = F.log_softmax(outputs, dim=1).gather(1, targets[:, None]).squeeze(1)
    return (-(1 - log_p.exp()) ** gamma * log_p).mean()


def mixup(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor, context) -> torch.Tensor:
    """Mixup (Zhang et al. 2018) with alpha = 1: train on convex mixtures of pairs of samples, the loss mixed
    alike; the mixing weight (uniform in [0, 1]) and the pairing come from the run's generator."""
    lam = torch.rand((), device=inputs.device, generator=context.generator)
    order = torch.randperm(len(inputs), device=inputs.device, generator=context.generator)
    outputs = model(lam * inputs + (1 - lam) * inputs[order]).float()
    return lam * context.loss(outputs, targets) + (1 - lam) * context.loss(outputs, targets[order])


def vector_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """A mistake the scaffold catches before any run: per-sample losses, not their mean."""
    return F.cross_entropy(outputs, targets, reduction="none")
