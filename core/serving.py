"""The model as it is served: what the data set stores goes in, the task's predictions come out.

A trained network expects normalised inputs, with statistics of its run's
training part. The model logged in MLflow's format wraps it with those
statistics as buffers, and ends with the task's head (core/tasks.py: class or
label probabilities; regression values back in the targets' own units, their
statistics as buffers too), so `mlflow.pyfunc`, `mlflow models serve` and
`mlflow.pytorch.load_model` all take raw inputs (uint8 images as 0-255 values,
or the user's float arrays) and give the same predictions as `train.predict`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from torch import nn

from core import user_code
from core.train import Prepared

CORE = Path(__file__).resolve().parent


class ServingModel(nn.Module):
    """head(network((x as float) * scale + shift)): the run's own normalisation, then the task's predictions."""

    def __init__(self, network: nn.Module, scale: torch.Tensor, shift: torch.Tensor, head: nn.Module):
        super().__init__()
        self.network = network
        self.head = head.cpu()
        self.register_buffer("scale", scale.detach().clone().float().cpu())
        self.register_buffer("shift", shift.detach().clone().float().cpu())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.network(x.float() * self.scale + self.shift).float())


def serving_model(prepared: Prepared, network: nn.Module) -> ServingModel:
    return ServingModel(network, prepared.normalize.scale, prepared.normalize.shift, prepared.task.head())


def raw_example(prepared: Prepared) -> np.ndarray:
    """A few test samples as the data set stores them: the logged model's input example."""
    return prepared.test.rows(0, 4, torch.device("cpu"))[0].numpy()


def signature(prepared: Prepared) -> ModelSignature:
    """Raw samples in (their dtype and shape), one named output: the task's predictions (probabilities of each
    class or label; values)."""
    data, task = prepared.data, prepared.task
    inputs = TensorSpec(np.dtype(np.uint8 if data.is_image else np.float32), (-1, *data.input_shape))
    outputs = TensorSpec(np.dtype(np.float32), (-1, task.outputs), name=task.served_output())
    return ModelSignature(inputs=Schema([inputs]), outputs=Schema([outputs]))


def code_paths(prepared: Prepared) -> list[str]:
    """What loading the pickled model needs besides PyTorch: this package, and the user's own packages."""
    folders = {CORE}
    for source in user_code.sources(prepared.config.user_references()):
        top = source.relative.split("/")[0]
        root = source.path.parents[source.relative.count("/")]
        folders.add(root / top)
    return sorted(str(folder) for folder in folders)
