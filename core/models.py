"""Every network of the seed notes, built by name from the config.

Input sizes come from the data (`input_shape`), and the size after the
convolutional part is measured with a dummy forward pass, never computed by
hand. Dropout and BatchNorm switch on by config.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from core import names, user_code
from core.config import ModelConfig
from core.errors import ConfigError, UserError

Builder = Callable[[ModelConfig, tuple[int, ...], int], nn.Module]
MODELS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(builder: Builder) -> Builder:
        MODELS[name] = builder
        return builder
    return add


def build_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The model `config.name` for samples of `input_shape` and `num_classes` outputs.

    A built-in name, or `module:function` of the user's own builder, called as
    `function(input_shape, num_classes, **model.args)`.
    """
    if user_code.is_reference(config.name):
        return build_user_model(config, tuple(input_shape), num_classes)
    if config.name not in MODELS:
        raise ConfigError(f"model.name={config.name!r} is not one of: {', '.join(sorted(MODELS))}")
    return MODELS[config.name](config, tuple(input_shape), num_classes)


def build_user_model(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    builder = user_code.load(config.name, "model.name")
    try:
        model = builder(input_shape, num_classes, **config.args)
    except Exception as error:  # the user's code: whatever it raises is bad input, said in one line
        raise UserError(f"model.name={config.name}: the builder raised {_first_line(error, with_type=True)} "
                        f"(called with input_shape={list(input_shape)}, num_classes={num_classes}, "
                        f"args {config.args})") from None
    if not isinstance(model, nn.Module):
        raise UserError(f"model.name={config.name}: the builder returned a {type(model).__name__}, "
                        f"not a torch.nn.Module")
    return model


def check_forward(model: nn.Module, sample: torch.Tensor, num_classes: int, name: str) -> None:
    """A forward pass on a couple of samples, so a user's model that does not fit the data fails before any run."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample)
    except Exception as error:
        raise UserError(f"model.name={name}: a forward pass on inputs of shape {list(sample.shape)} failed: "
                        f"{_first_line(error, with_type=True)}") from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(sample), num_classes):
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(f"model.name={name}: the model gives {shape} for inputs of shape {list(sample.shape)}; "
                        f"it must give logits of shape [batch, {num_classes}]")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(model: nn.Module, sample: torch.Tensor) -> int:
    """Floating-point operations of one forward pass of one sample (torch's flop counter: matmuls and
    convolutions), in eval mode with no gradient; the parameter count twice over if the counter fails."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(sample)
        return int(counter.get_total_flops())
    except Exception:  # a user's model the counter cannot follow: its size stands in
        return 2 * count_parameters(model)
    finally:
        model.train(was_training)


# ---- fully connected -------------------------------------------------------

def mlp_stack(in_features: int, widths: list[int], num_classes: int, config: ModelConfig) -> nn.Sequential:
    """Linear layers with ReLU, optional BatchNorm1d before it and Dropout after it."""
    layers: list[nn.Module] = []
    if config.dropout and not widths:
        layers.append(nn.Dropout(config.dropout))  # a head with no hidden layer still honours model.dropout
    for width in widths:
        layers.append(nn.Linear(in_features, width))
        if config.batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU(inplace=True))
        if config.dropout:
            layers.append(nn.Dropout(config.dropout))
        in_features = width
    layers.append(nn.Linear(in_features, num_classes))  # logits: no activation on the output
    return nn.Sequential(*layers)


@register("mlp")
def mlp(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The notes' MNIST classifier: 784-200-200-10, widths configurable."""
    widths = config.hidden or names.HIDDEN["mlp"]
    return nn.Sequential(nn.Flatten(), mlp_stack(math.prod(input_shape), widths, num_classes, config))


@register("quickstart")
def quickstart(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The PyTorch quickstart network: flatten, 512-512, then the classes."""
    widths = config.hidden or names.HIDDEN["quickstart"]
    return nn.Sequential(nn.Flatten(), mlp_stack(math.prod(input_shape), widths, num_classes, config))


# ---- convolutional ---------------------------------------------------------

class ConvNet(nn.Module):
    """A convolutional feature extractor followed by a fully connected head.

    The head's input size is measured by running the features on a dummy input; `head_widths` [] means
    the model's own (names.HIDDEN).
    """

    def __init__(self, features: nn.Module, head_widths: list[int], input_shape: tuple[int, ...],
                 num_classes: int, config: ModelConfig, name: str):
        super().__init__()
        self.features = features
        flat = _feature_size(features, input_shape, name)
        self.head = mlp_stack(flat, head_widths or names.HIDDEN[name], num_classes, config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


class PoolTo(nn.Module):
    """AdaptiveAvgPool2d(size), by an exact equivalent whose CUDA backward is deterministic where the input size
    allows: the same size (identity), a multiple (avg_pool2d with a fixed window) or a divisor of it (each value
    repeated: AlexNet's 2x2 maps at 96x96 become 6x6). AdaptiveAvgPool2d's own backward on CUDA has no
    deterministic kernel (train.deterministic raises at the first step); `adaptive` says it is used."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = size
        self.adaptive = False  # set by a forward pass (the builder's dummy one measures the head's input)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (out_h, out_w) = x.shape[-2:], self.size
        if (h, w) == (out_h, out_w):
            return x
        if h % out_h == 0 and w % out_w == 0:
            return nn.functional.avg_pool2d(x, (h // out_h, w // out_w))
        if out_h % h == 0 and out_w % w == 0:  # every window is one value: repeat it (backward: a sum)
            n, c = x.shape[:2]
            grid = x[:, :, :, None, :, None].expand(n, c, h, out_h // h, w, out_w // w)
            return grid.reshape(n, c, out_h, out_w)
        self.adaptive = True
        return nn.functional.adaptive_avg_pool2d(x, self.size)


def check_deterministic(model: nn.Module, device: torch.device, deterministic: bool) -> None:
    """One line before any run, instead of an error at the first step: a PoolTo that needs AdaptiveAvgPool2d
    under train.deterministic on CUDA."""
    if not (deterministic and device.type == "cuda"):
        return
    if any(isinstance(module, PoolTo) and module.adaptive for module in model.modules()):
        raise ConfigError("train.deterministic=true on CUDA: this input size needs AdaptiveAvgPool2d, whose backward "
                          "has no deterministic CUDA kernel; use a data.resize whose feature map divides or is a "
                          "multiple of 6x6 (alexnet_cifar: 64, 96, 128, 224), train.deterministic=false or device=cpu")


def _feature_size(features: nn.Module, input_shape: tuple[int, ...], name: str) -> int:
    was_training = features.training
    features.eval()
    try:
        with torch.no_grad():
            out = features(torch.zeros((1,) + input_shape))
    except RuntimeError as error:
        raise ConfigError(f"model {name} is too deep for inputs of shape {list(input_shape)} ({_first_line(error)}); "
                          f"use larger inputs (data.resize) or a smaller model") from None
    finally:
        features.train(was_training)
    if out.numel() == 0:
        raise ConfigError(f"model {name} shrinks inputs of shape {list(input_shape)} to nothing; "
                          f"use larger inputs (data.resize) or a smaller model")
    return out.numel()


def _first_line(error: Exception, with_type: bool = False) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    if with_type:
        return f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text or type(error).__name__


def _image_shape(input_shape: tuple[int, ...], name: str) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ConfigError(f"model {name} takes images shaped [C, H, W], and the data gives {list(input_shape)}")
    return input_shape  # type: ignore[return-value]


def conv_block(in_ch: int, out_ch: int, kernel: int, config: ModelConfig, dims: int = 2,
               **layout: int) -> list[nn.Module]:
    """Convolution (`layout`: its stride and padding), batch norm when the config asks, ReLU."""
    conv = nn.Conv2d if dims == 2 else nn.Conv1d
    norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    layers: list[nn.Module] = [conv(in_ch, out_ch, kernel, bias=not config.batchnorm, **layout)]
    if config.batchnorm:
        layers.append(norm(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return layers


@register("seed_net")
def seed_net(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Note 000's five-layer net: conv 1->6->16 (3x3), then 512-64-out (made for 1x32x32)."""
    channels, _, _ = _image_shape(input_shape, "seed_net")
    c1, c2 = (config.channels + [6, 16][len(config.channels):])[:2]
    features = nn.Sequential(*conv_block(channels, c1, 3, config), *conv_block(c1, c2, 3, config))
    return ConvNet(features, config.hidden, input_shape, num_classes, config, "seed_net")


@register("lenet5")
def lenet5(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """LeNet-5: conv 6 (5x5, padded) - pool - conv 16 (5x5) - pool - 120 - 84 - out."""
    channels, _, _ = _image_shape(input_shape, "lenet5")
    c1, c2 = (config.channels + [6, 16][len(config.channels):])[:2]
    features = nn.Sequential(*conv_block(channels, c1, 5, config, padding=2), nn.MaxPool2d(2),
                             *conv_block(c1, c2, 5, config), nn.MaxPool2d(2))
    return ConvNet(features, config.hidden, input_shape, num_classes, config, "lenet5")


@register("small_cnn")
def small_cnn(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small conv net for small images (digits' 8x8): one 3x3 block per width of model.channels, each
    halving the image while it is at least 4 pixels, then the head (model.hidden, none by default)."""
    channels, height, _ = _image_shape(input_shape, "small_cnn")
    layers: list[nn.Module] = []
    for width in config.channels or [32, 64]:
        layers += conv_block(channels, width, 3, config, padding=1)
        if height >= 4:
            layers.append(nn.MaxPool2d(2))
            height //= 2
        channels = width
    return ConvNet(nn.Sequential(*layers), config.hidden, input_shape, num_classes, config, "small_cnn")


@register("alexnet_cifar")
def alexnet_cifar(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Note 003's AlexNet for CIFAR-10 (which resizes the images to 96x96)."""
    channels, _, _ = _image_shape(input_shape, "alexnet_cifar")
    widths = (config.channels + [64, 192, 384, 256, 256][len(config.channels):])[:5]
    features = nn.Sequential(
        *conv_block(channels, widths[0], 11, config, stride=4, padding=2), nn.MaxPool2d(3, 2),
        *conv_block(widths[0], widths[1], 5, config, padding=2), nn.MaxPool2d(3, 2),
        *conv_block(widths[1], widths[2], 3, config, padding=1),
        *conv_block(widths[2], widths[3], 3, config, padding=1),
        *conv_block(widths[3], widths[4], 3, config, padding=1), nn.MaxPool2d(3, 2),
        PoolTo((6, 6)),  # the notes' AdaptiveAvgPool2d((6, 6)), with a deterministic CUDA backward where it can
    )
    # The notes put Dropout(0.5) around the two big layers: set model.dropout=0.5 for that.
    return ConvNet(features, config.hidden, input_shape, num_classes, config, "alexnet_cifar")


@register("vgg_small")
def vgg_small(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """VGG-style: blocks of two 3x3 convolutions and a 2x2 max pool."""
    channels, _, _ = _image_shape(input_shape, "vgg_small")
    layers: list[nn.Module] = []
    for width in config.channels or [32, 64, 128]:
        layers += conv_block(channels, width, 3, config, padding=1)
        layers += conv_block(width, width, 3, config, padding=1)
        layers.append(nn.MaxPool2d(2))
        channels = width
    return ConvNet(nn.Sequential(*layers), config.hidden, input_shape, num_classes, config, "vgg_small")


class BasicBlock(nn.Module):
    """ResNet's two 3x3 convolutions with an identity (or 1x1 projected) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


@register("resnet_small")
def resnet_small(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A small ResNet: a 3x3 stem, one BasicBlock per stage (stride 2 after the first)."""
    channels, _, _ = _image_shape(input_shape, "resnet_small")
    widths = config.channels or [32, 64, 128]
    layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1, bias=False),
                               nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
    for index, width in enumerate(widths):
        layers.append(BasicBlock(layers[0].out_channels if index == 0 else widths[index - 1], width,
                                 stride=1 if index == 0 else 2))
    layers.append(nn.AdaptiveAvgPool2d(1))
    return ConvNet(nn.Sequential(*layers), config.hidden, input_shape, num_classes, config, "resnet_small")


@register("conv1d")
def conv1d(config: ModelConfig, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A 1-D convolutional net for signals shaped [C, L]: conv blocks, pooling, global average."""
    if len(input_shape) != 2:
        raise ConfigError(f"model conv1d takes signals shaped [C, L], and the data gives {list(input_shape)}")
    channels = input_shape[0]
    layers: list[nn.Module] = []
    for width in config.channels or [16, 32, 64]:
        layers += conv_block(channels, width, 5, config, padding=2, dims=1)
        layers.append(nn.MaxPool1d(2))
        channels = width
    layers.append(nn.AdaptiveAvgPool1d(1))
    return ConvNet(nn.Sequential(*layers), config.hidden, input_shape, num_classes, config, "conv1d")
