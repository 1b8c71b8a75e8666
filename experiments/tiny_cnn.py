"""A small convolutional network of your own: `model.name=experiments.tiny_cnn:build`.

The scaffold calls `build(input_shape, num_classes, **model.args)`; each keyword
argument below is a config key (`model.args.width=32`), logged as a param and
searchable in a study (see studies/tiny_cnn.yaml).
"""

from __future__ import annotations

from torch import nn


def build(input_shape: tuple[int, ...], num_classes: int, width: int = 16, depth: int = 2,
          dropout: float = 0.0) -> nn.Module:
    """`depth` blocks of 3x3 convolution, BatchNorm and ReLU (doubling the width each block, halving the
    image while it is at least 4 pixels), then global average pooling and a linear classifier."""
    channels, height, _ = input_shape
    layers: list[nn.Module] = []
    for block in range(depth):
        out = width * 2**block
        layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        if height >= 4:
            layers.append(nn.MaxPool2d(2))
            height //= 2
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
