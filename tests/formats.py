"""Writers for the real on-disk formats the loaders read (tests and benchmarks make their files)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic (0, 0, 0x08, ndim), big-endian sizes, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        handle.write(struct.pack(f">{array.ndim}I", *array.shape))
        handle.write(array.tobytes())


def write_mnist(root: Path, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                test_labels: np.ndarray, folder: str = "MNIST") -> Path:
    """The four unpacked IDX files under root/<folder>/raw/, as torchvision's MNIST class expects."""
    raw = Path(root) / folder / "raw"
    for part, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        write_idx(raw / IDX_FILES[part][0], images)
        write_idx(raw / IDX_FILES[part][1], labels)
    return raw


def write_cifar10(root: Path, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                  test_labels: np.ndarray) -> Path:
    """cifar-10-batches-py/: five training batches and a test batch, pickled dicts of bytes keys."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = np.array_split(np.arange(len(train_labels)), 5)
    for number, index in enumerate(batches, start=1):
        _write_cifar_batch(folder / f"data_batch_{number}", train_images[index], train_labels[index])
    _write_cifar_batch(folder / "test_batch", test_images, test_labels)
    return folder


def _write_cifar_batch(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    batch = {b"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1),
             b"labels": [int(label) for label in labels]}
    with open(path, "wb") as handle:
        pickle.dump(batch, handle)
