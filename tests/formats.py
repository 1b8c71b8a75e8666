"""Writers for the real on-disk formats the loaders read (tests and benchmarks make their files)."""

from __future__ import annotations

import gzip
import pickle
import struct
import tarfile
import tempfile
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
    batch = {"data": np.ascontiguousarray(images, dtype=np.uint8).reshape(len(images), -1),
             "labels": [int(label) for label in labels]}
    path.write_bytes(_python2_pickle(batch))


def _python2_pickle(mapping: dict) -> bytes:
    """A dict pickled as Python 2 did for the real CIFAR files: its keys are byte strings that unpickle as
    bytes with encoding="bytes" (our loader) and as text with encoding="latin1" (torchvision's)."""
    data = pickle.dumps(mapping, protocol=2)
    for key in mapping:
        raw = key.encode()
        data = data.replace(b"X" + len(raw).to_bytes(4, "little") + raw, b"U" + bytes([len(raw)]) + raw, 1)
    return data


def write_cifar10_archive(path: Path, train_images: np.ndarray, train_labels: np.ndarray,
                          test_images: np.ndarray, test_labels: np.ndarray) -> Path:
    """cifar-10-python.tar.gz as published: cifar-10-batches-py/ with the batches and batches.meta."""
    with tempfile.TemporaryDirectory() as folder:
        batches = write_cifar10(Path(folder), train_images, train_labels, test_images, test_labels)
        meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": 10, "num_vis": 3072}
        (batches / "batches.meta").write_bytes(_python2_pickle(meta))
        with tarfile.open(path, "w:gz") as archive:
            archive.add(batches, arcname="cifar-10-batches-py")
    return path


def write_mnist_archives(folder: Path, train_images: np.ndarray, train_labels: np.ndarray,
                         test_images: np.ndarray, test_labels: np.ndarray) -> list[Path]:
    """The four gzipped IDX files as published (train-images-idx3-ubyte.gz, ...)."""

    with tempfile.TemporaryDirectory() as unpacked:
        raw = write_mnist(Path(unpacked), train_images, train_labels, test_images, test_labels)
        archives = []
        for name in [*IDX_FILES["train"], *IDX_FILES["test"]]:
            target = Path(folder) / f"{name}.gz"
            target.write_bytes(gzip.compress((raw / name).read_bytes(), mtime=0))
            archives.append(target)
    return archives
