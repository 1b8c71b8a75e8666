"""Data sets as tensors.

Each loader returns a `Dataset`: train and test images as one uint8 tensor each
(signals as float32), integer labels, and a fingerprint of the contents. The
training code moves the whole set to the device once and batches by index.
Normalisation statistics are computed by the trainer from the training part of
the split only (see `channel_stats`).
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core.config import DataConfig
from core.errors import DataError
from core.names import ON_DISK


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) uint8 images, or (N, C, L) float32 signals
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    fingerprint: str  # sha256 of the tensors, before any subset

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train_x.dtype == torch.uint8

    def to(self, device: torch.device | str) -> Dataset:
        move = lambda tensor: tensor.to(device, non_blocking=True)  # noqa: E731
        return Dataset(self.name, move(self.train_x), move(self.train_y), move(self.test_x),
                       move(self.test_y), self.num_classes, self.fingerprint)


def load_dataset(config: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """Load `config.name`, apply `train_size` and `resize`, and put it on `device`.

    Kept in memory per process, so the trials of a study load their data once.
    """
    key = (repr(sorted(vars(config).items())), _files_stamp(config), str(device))
    if key not in _CACHE:
        _CACHE.clear()  # one data set at a time: they can be large
        _CACHE[key] = _load(config).to(device)
    return _CACHE[key]


def _load(config: DataConfig) -> Dataset:
    dataset = DATASETS[config.name](config)
    if config.train_size and config.train_size < len(dataset.train_y):
        # A fixed seed: every run and trial on this config sees the same subset.
        keep = _stratified_subset(dataset.train_y, config.train_size, seed=0)
        dataset.train_x, dataset.train_y = dataset.train_x[keep], dataset.train_y[keep]
    if config.resize:
        if not dataset.is_image:
            raise DataError(f"data.resize={config.resize} applies to images, and {config.name} holds signals")
        dataset.train_x = resize_images(dataset.train_x, config.resize)
        dataset.test_x = resize_images(dataset.test_x, config.resize)
    return dataset


_CACHE: dict[tuple[str, str, str], Dataset] = {}


def _files_stamp(config: DataConfig) -> str:
    """Sizes and modification times of a set's files: a changed file is loaded again."""
    folder = ON_DISK.get(config.name)
    if folder is None:
        return ""
    files = sorted((Path(config.root) / folder).glob("*"))
    return repr([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()])


def fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def resize_images(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Bilinear resize of uint8 images in chunks, staying uint8."""
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + chunk] = part.round().clamp(0, 255).to(torch.uint8)
    return out


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of `x` (N, C, ...) as floats shaped for broadcasting."""
    values = x.float().transpose(0, 1).reshape(x.shape[1], -1)
    if x.dtype == torch.uint8:
        values = values / 255.0
    mean = values.mean(dim=1)
    std = values.std(dim=1).clamp_min(1e-6)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return mean.view(shape), std.view(shape)


# ---- loaders ---------------------------------------------------------------

def load_digits(config: DataConfig) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, shipped with the package)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy((bunch.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return _with_fixed_test_part("digits", images, labels, 10, config.test_fraction)


def load_synthetic(config: DataConfig) -> Dataset:
    """Learnable random data: one random prototype per class plus noise.

    Shape [C, H, W] gives uint8 images, [C, L] float signals, [D] float vectors.
    Always generated from the same seed, so its fingerprint is stable.
    """
    generator = torch.Generator().manual_seed(12345)
    shape = tuple(config.shape)
    labels = torch.randint(0, config.num_classes, (config.samples,), generator=generator)
    prototypes = torch.randn((config.num_classes,) + shape, generator=generator)
    samples = prototypes[labels] + 0.8 * torch.randn((config.samples,) + shape, generator=generator)
    if len(shape) == 3:
        samples = (samples * 40 + 128).round().clamp(0, 255).to(torch.uint8)
    return _with_fixed_test_part("synthetic", samples, labels, config.num_classes, config.test_fraction)


def load_mnist(config: DataConfig) -> Dataset:
    return _load_idx("MNIST", "mnist", config)


def load_fashion_mnist(config: DataConfig) -> Dataset:
    return _load_idx("FashionMNIST", "fashion_mnist", config)


def _load_idx(folder: str, name: str, config: DataConfig) -> Dataset:
    """The real IDX files, read through torchvision's classes (no download)."""
    from torchvision import datasets

    raw = Path(config.root) / folder / "raw"
    expected = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    missing = [f for f in expected if not (raw / f).is_file()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} in {raw}/ (put the unpacked IDX files there)")
    cls = getattr(datasets, folder)
    try:
        train = cls(config.root, train=True, download=False)
        test = cls(config.root, train=False, download=False)
    except Exception as error:  # torchvision raises plain errors for truncated or bad files
        raise DataError(f"{name}: cannot read the IDX files in {raw}/: {error}") from None
    train_x, test_x = train.data.unsqueeze(1), test.data.unsqueeze(1)
    train_y, test_y = train.targets.long(), test.targets.long()
    return Dataset(name, train_x, train_y, test_x, test_y, 10, fingerprint(train_x, train_y, test_x, test_y))


def load_cifar10(config: DataConfig) -> Dataset:
    """The real python-pickle batches of CIFAR-10 (cifar-10-batches-py/)."""
    folder = Path(config.root) / "cifar-10-batches-py"
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    missing = [f for f in train_files + ["test_batch"] if not (folder / f).is_file()]
    if missing:
        raise DataError(f"cifar10: missing {', '.join(missing)} in {folder}/ (unpack cifar-10-python.tar.gz there)")
    train_x, train_y = zip(*(_read_cifar_batch(folder / f) for f in train_files))
    test_x, test_y = _read_cifar_batch(folder / "test_batch")
    train_x, train_y = torch.cat(train_x), torch.cat(train_y)
    return Dataset("cifar10", train_x, train_y, test_x, test_y, 10,
                   fingerprint(train_x, train_y, test_x, test_y))


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:
        raise DataError(f"cifar10: cannot read {path}: {error}") from None
    if len(data) != len(labels):
        raise DataError(f"cifar10: {path} holds {len(data)} images but {len(labels)} labels")
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def _with_fixed_test_part(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                          test_fraction: float) -> Dataset:
    """Sets with no test split of their own get a fixed, stratified one (seed 0)."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                           random_state=0, stratify=y.numpy())
    train_idx, test_idx = torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))
    parts = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    return Dataset(name, *parts, num_classes, fingerprint(*parts))


def _stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    from sklearn.model_selection import train_test_split

    counts = torch.bincount(labels)
    stratify = labels.numpy() if size >= len(counts) and counts.min() >= 2 else None
    keep, _ = train_test_split(np.arange(len(labels)), train_size=size, random_state=seed, stratify=stratify)
    return torch.from_numpy(np.sort(keep))


DATASETS: dict[str, Callable[[DataConfig], Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "synthetic": load_synthetic,
}
