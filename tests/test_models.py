"""Every model builds on matching input, gives (batch, classes) and a gradient; switches work."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core import names
from core.config import ModelConfig
from core.data import DATASETS
from core.errors import ConfigError
from core.models import MODELS, build_model, count_parameters

SHAPES = {"mlp": (1, 28, 28), "quickstart": (1, 28, 28), "seed_net": (1, 32, 32), "lenet5": (1, 28, 28),
          "small_cnn": (1, 8, 8), "alexnet_cifar": (3, 96, 96),
          "vgg_small": (3, 32, 32), "resnet_small": (3, 32, 32), "conv1d": (2, 64)}


def test_every_model_has_a_shape_here_and_its_name_in_the_torch_free_list():
    assert set(SHAPES) == set(MODELS) == set(names.MODELS)


def test_every_data_set_has_a_loader_under_its_torch_free_name():
    assert set(DATASETS) == set(names.DATASETS) and set(names.ON_DISK) <= set(DATASETS)


@pytest.mark.parametrize("name", sorted(SHAPES))
@pytest.mark.parametrize("switches", [{}, {"dropout": 0.3, "batchnorm": True}])
def test_builds_runs_and_backpropagates(name, switches):
    model = build_model(ModelConfig(name=name, **switches), SHAPES[name], num_classes=7)
    out = model(torch.randn(3, *SHAPES[name]))
    assert out.shape == (3, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    layers = {type(m) for m in model.modules()}
    if switches.get("dropout"):
        assert nn.Dropout in layers
    if switches.get("batchnorm"):
        assert layers & {nn.BatchNorm1d, nn.BatchNorm2d}


def test_mlp_defaults_to_the_notes_784_200_200_10():
    model = build_model(ModelConfig(name="mlp"), (1, 28, 28), 10)
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [(784, 200), (200, 200), (200, 10)]
    assert count_parameters(model) == 784 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10


def test_flatten_size_comes_from_the_data():
    model = build_model(ModelConfig(name="seed_net"), (1, 32, 32), 2)
    assert model.head[0].in_features == 16 * 28 * 28  # the notes' 12544, measured not typed


@pytest.mark.parametrize("name, shape", [("alexnet_cifar", (3, 32, 32)), ("lenet5", (1, 4, 4)), ("conv1d", (1, 4))])
def test_too_deep_for_the_input_is_a_clear_error(name, shape):
    with pytest.raises(ConfigError, match="too deep|to nothing"):
        build_model(ModelConfig(name=name), shape, 10)


def test_wrong_kind_of_input():
    with pytest.raises(ConfigError, match="images"):
        build_model(ModelConfig(name="lenet5"), (2, 64), 10)
