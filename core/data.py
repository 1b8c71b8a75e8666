"""Data sets as tensors.

Each loader returns a `Dataset`: train and test images as one uint8 tensor each
(signals as float32), targets (whole-number labels as int64; real values and
(N, D) matrices as float32: the run's task, core/tasks.py, says whether they fit),
and a fingerprint of the contents. The
training code moves the whole set to the device once and batches by index.
Normalisation statistics are computed by the trainer from the training part of
the split only (see `channel_stats`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from core import data_cache, image_folder, user_code
from core.config import DataConfig
from core.errors import DataError
from core.names import ON_DISK
from core.streaming import Part, in_memory


@dataclass
class Dataset:
    name: str
    train_x: torch.Tensor  # (N, C, H, W) uint8 images, or (N, C, L) float32 signals
    train_y: torch.Tensor  # (N,) int64 whole-number labels, or float32 (N,) or (N, D) targets
    test_x: torch.Tensor
    test_y: torch.Tensor
    fingerprint: str  # sha256 of the tensors, before any subset
    streamed: bool = False  # left where it was loaded (host memory, the cache's files): batches stream to the device

    @property
    def num_classes(self) -> int:
        """C for whole-number labels 0..C-1; 0 for other targets."""
        if self.train_y.dim() != 1 or self.train_y.is_floating_point():
            return 0
        return int(torch.cat([self.train_y, self.test_y]).max()) + 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train_x.dtype == torch.uint8

    def to(self, device: torch.device | str) -> Dataset:
        # a plain copy: non_blocking from pageable memory is synchronous anyway, and pinning the whole set
        # first would be one more host copy of it for a transfer made once
        move = lambda tensor: tensor.to(device)  # noqa: E731
        return Dataset(self.name, move(self.train_x), move(self.train_y), move(self.test_x),
                       move(self.test_y), self.fingerprint)

    @property
    def nbytes(self) -> int:
        return sum(tensor.nbytes for tensor in (self.train_x, self.train_y, self.test_x, self.test_y))


def load_dataset(config: DataConfig, device: torch.device | str = "cpu") -> Dataset:
    """Load `config.name`, apply `train_size` and `resize`, and put it on `device`, or leave it where it was
    loaded to be streamed (data.in_memory, core/streaming.py).

    Kept per process, so the trials of a study load their data once.
    """
    key = (repr(sorted(vars(config).items())), _files_stamp(config), str(device))
    if key not in _CACHE:
        _CACHE.clear()  # one data set at a time: they can be large
        dataset = _load(config)
        if in_memory(config, dataset.nbytes, torch.device(device)):
            _CACHE[key] = dataset.to(device)
        else:
            dataset.streamed = True
            _CACHE[key] = dataset
    return _CACHE[key]


def _load(config: DataConfig) -> Dataset:
    if config.download:
        download(config)
    if user_code.is_reference(config.name):
        dataset = load_user_data(config)
    elif config.name in ON_DISK and config.cache:
        dataset = _built_in_once(config)
    else:
        dataset = DATASETS[config.name](config)
    if config.train_size and config.train_size < len(dataset.train_y):
        # A fixed seed: every run and trial on this config sees the same subset.
        keep = _stratified_subset(dataset.train_y, config.train_size, seed=0)
        dataset.train_x, dataset.train_y = dataset.train_x[keep], dataset.train_y[keep]
    if config.resize and config.name != "image_folder":  # an image folder is decoded at that size
        if not dataset.is_image:
            raise DataError(f"data.resize={config.resize} applies to images, and {config.name} holds signals")
        dataset.train_x = resize_images(dataset.train_x, config.resize)
        dataset.test_x = resize_images(dataset.test_x, config.resize)
    return dataset


_CACHE: dict[tuple[str, str, str], Dataset] = {}


def drop_cached_data() -> None:
    """Forget the data set load_dataset keeps, so that its memory (host or GPU) is freed."""
    _CACHE.clear()


def _files_stamp(config: DataConfig) -> str:
    """Sizes and modification times of a set's files: a changed file is loaded again."""
    if config.name == "npz":
        files = [Path(config.path)]
    elif config.name == "npy":
        files = [Path(config.path) / f"{name}.npy" for name in NPY_FILES]
    elif config.name == "image_folder":
        return repr([_stamp(path) for path in _files_under(Path(config.root))]) if Path(config.root).is_dir() else ""
    elif config.name in ON_DISK:
        files = sorted((Path(config.root) / ON_DISK[config.name]).glob("*"))
    else:
        return ""
    return repr([(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()])


def _stamp(path: str) -> tuple[str, int, int]:
    try:
        status = os.stat(path)
    except FileNotFoundError:  # a dangling link, a file gone meanwhile: not read, so not stamped
        return path, -1, -1
    except OSError as error:
        raise DataError(f"image_folder: cannot read {path}: {error.strerror}") from None
    return path, status.st_size, status.st_mtime_ns


def _files_under(folder: Path) -> list[str]:
    """Every file under `folder`, in torchvision's order. Links to folders are not followed (torchvision's
    make_dataset follows them, and a link loop never ends); a folder that cannot be read is one DataError."""
    def refuse(error: OSError) -> None:
        raise DataError(f"image_folder: cannot read {error.filename}: {error.strerror}")

    return [os.path.join(top, name) for top, _, names in sorted(os.walk(folder, onerror=refuse))
            for name in sorted(names)]


def fingerprint(*arrays: torch.Tensor | np.ndarray, chunk_bytes: int = 64 << 20) -> str:
    """A hash of the arrays' shapes and bytes, read in chunks (a memory-mapped set is never copied whole)."""
    digest = hashlib.sha256()
    for array in arrays:
        array = array.cpu().numpy() if isinstance(array, torch.Tensor) else array
        digest.update(str(tuple(array.shape)).encode())
        rows = max(1, chunk_bytes // max(1, array[:1].nbytes))
        for start in range(0, len(array), rows):
            digest.update(memoryview(np.ascontiguousarray(array[start:start + rows])).cast("B"))
    return digest.hexdigest()[:16]


def resize_images(images: torch.Tensor, size: int, chunk: int = 4096) -> torch.Tensor:
    """Bilinear resize of uint8 images in chunks, staying uint8."""
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk].float()
        part = F.interpolate(part, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[start:start + chunk] = part.round().clamp(0, 255).to(torch.uint8)
    return out


def channel_stats(x: torch.Tensor | Part, chunk_values: int = 2**22,
                  device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of `x` (N, C, ...) as floats shaped for broadcasting: a tensor, or a Part of a
    stored set (gathered a chunk at a time onto `device`: a streamed set is read once, never copied whole).

    In chunks of samples, so that at most one chunk is ever a wider copy (the whole training part of a large set
    as float, several times over, does not fit beside it on a GPU, nor in a streamed run's memory). uint8 images
    in one pass of exact integer sums; floats in float64, the mean first, then the squared deviations from it
    (no cancellation, and the chunks' order costs no precision)."""
    stored = x.x if isinstance(x, Part) else x
    channels = stored.shape[1]
    rows = max(1, chunk_values // max(1, stored[:1].numel()))  # samples per chunk: 32 MiB of 64-bit values

    def chunks() -> Iterator[torch.Tensor]:  # each (rows, C, values per channel)
        if isinstance(x, Part):
            parts = (xb for xb, _ in x.chunks(rows, device or stored.device))
        else:
            parts = (x[start:start + rows] for start in range(0, len(x), rows))
        return (part.reshape(len(part), channels, -1) for part in parts)

    count = len(x) * (stored[:1].numel() // channels)
    if stored.dtype == torch.uint8:
        mean, std = _exact_uint8_stats(chunks(), channels, count)
    else:
        mean = sum(part.double().sum(dim=(0, 2)) for part in chunks()) / count
        squares = sum(part.double().sub_(mean[None, :, None]).square_().sum(dim=(0, 2)) for part in chunks())
        std = (squares / max(count - 1, 1)).sqrt()
    shape = (1, -1) + (1,) * (stored.dim() - 2)
    return mean.float().view(shape), std.float().clamp_min(1e-6).view(shape)


def _exact_uint8_stats(chunks: Iterator[torch.Tensor], channels: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sample std of uint8 values, scaled to 0..1, from sums and sums of squares kept as exact integers
    (int64 per chunk, Python's integers across them): one pass, and no rounding before the final division."""
    total, squares = [0] * channels, [0] * channels
    for part in chunks:
        values = part.long()
        total = [t + s for t, s in zip(total, values.sum(dim=(0, 2)).tolist())]
        squares = [q + s for q, s in zip(squares, values.square_().sum(dim=(0, 2)).tolist())]
    mean = [t / count for t in total]
    variance = [(count * q - t * t) / (count * max(count - 1, 1)) for t, q in zip(total, squares)]
    return (torch.tensor(mean, dtype=torch.float64) / 255.0,
            torch.tensor(variance, dtype=torch.float64).sqrt() / 255.0)


# ---- loaders ---------------------------------------------------------------

def load_digits(config: DataConfig) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, shipped with the package)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.from_numpy((bunch.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    return _with_fixed_test_part("digits", images, labels, config.test_fraction)


def load_synthetic(config: DataConfig) -> Dataset:
    """Learnable random data: one random prototype per class plus noise.

    Shape [C, H, W] gives uint8 images, [C, L] float signals, [D] float vectors.
    The targets (data.targets) are the classes, values (a smooth function of the
    noisy sample, for regression) or labels (num_classes 0/1 labels: which
    prototypes a sample is near). Always generated from the same seed, so its
    fingerprint is stable.
    """
    generator = torch.Generator().manual_seed(12345)
    shape = tuple(config.shape)
    labels = torch.randint(0, config.num_classes, (config.samples,), generator=generator)
    prototypes = torch.randn((config.num_classes,) + shape, generator=generator)
    samples = prototypes[labels] + 0.8 * torch.randn((config.samples,) + shape, generator=generator)
    flat = samples.reshape(len(samples), -1)
    targets = {"classes": lambda: labels,
               "values": lambda: torch.tanh(flat @ torch.randn(flat.shape[1], generator=generator) / 4) * 10 + 50,
               "labels": lambda: (flat @ prototypes.reshape(len(prototypes), -1).T > 0).float()}[
        "classes" if config.targets == "auto" else config.targets]()
    if len(shape) == 3:
        samples = (samples * 40 + 128).round().clamp(0, 255).to(torch.uint8)
    return _with_fixed_test_part("synthetic", samples, targets, config.test_fraction)


def download(config: DataConfig) -> None:
    """Fetch mnist, fashion_mnist or cifar10 through torchvision's own classes, which verify each file's
    checksum, into `data.root` in the layout the loaders read. Files already there are kept. The download
    goes to a staging folder beside them and moves into place only when complete, so a failed try leaves
    nothing half-extracted and the next one starts clean."""
    from torchvision import datasets

    folder = Path(config.root) / ON_DISK[config.name]
    if not _missing_files(config):
        return
    source = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[config.name]
    if config.mirror:  # the same class, fetching from another host
        base = config.mirror.rstrip("/") + "/"
        source = type(source.__name__, (source,), {"url": base + source.filename} if config.name == "cifar10"
                      else {"mirrors": [base]})
    Path(config.root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=config.root))
    try:
        source(str(staging), train=True, download=True)
        _move_into_place(staging / ON_DISK[config.name], folder)
    except Exception as error:  # no network, a checksum mismatch, a broken archive: one line, nothing left
        tried = config.mirror or "torchvision's default hosts"
        raise DataError(f"{config.name}: download from {tried} failed: {' '.join(str(error).split())[:400]} "
                        f"(or put the unpacked files in {folder}/ by hand)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


_IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
FILES = {"mnist": _IDX, "fashion_mnist": _IDX,
         "cifar10": [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}  # the files the loaders read


def _missing_files(config: DataConfig) -> list[str]:
    folder = Path(config.root) / ON_DISK[config.name]
    return [name for name in FILES[config.name] if not (folder / name).is_file()]


def _move_into_place(staged: Path, folder: Path) -> None:
    """The staged data files into `folder` (not the downloaded archives, which the loaders do not read)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in staged.iterdir():
        kept = (folder / path.name).exists()  # files already there are the user's: kept as they are
        if path.is_file() and not kept and not path.name.endswith((".gz", ".tar", ".zip")):
            os.replace(path, folder / path.name)


def load_mnist(config: DataConfig) -> Dataset:
    return _load_idx("MNIST", "mnist", config)


def load_fashion_mnist(config: DataConfig) -> Dataset:
    return _load_idx("FashionMNIST", "fashion_mnist", config)


def _load_idx(folder: str, name: str, config: DataConfig) -> Dataset:
    """The real IDX files, read through torchvision's classes (no download)."""
    from torchvision import datasets

    raw = Path(config.root) / folder / "raw"
    missing = _missing_files(config)
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)} in {raw}/ (put the unpacked IDX files there, "
                        f"or add data.download=true)")
    cls = getattr(datasets, folder)
    try:
        train = cls(config.root, train=True, download=False)
        test = cls(config.root, train=False, download=False)
    except Exception as error:  # torchvision raises plain errors for truncated or bad files
        raise DataError(f"{name}: cannot read the IDX files in {raw}/: {error}") from None
    train_x, test_x = train.data.unsqueeze(1), test.data.unsqueeze(1)
    train_y, test_y = train.targets.long(), test.targets.long()
    return Dataset(name, train_x, train_y, test_x, test_y, fingerprint(train_x, train_y, test_x, test_y))


def load_cifar10(config: DataConfig) -> Dataset:
    """The real python-pickle batches of CIFAR-10 (cifar-10-batches-py/)."""
    folder = Path(config.root) / "cifar-10-batches-py"
    train_files = [f"data_batch_{i}" for i in range(1, 6)]
    missing = _missing_files(config)
    if missing:
        raise DataError(f"cifar10: missing {', '.join(missing)} in {folder}/ (unpack cifar-10-python.tar.gz there, "
                        f"or add data.download=true)")
    train_x, train_y = zip(*(_read_cifar_batch(folder / f) for f in train_files))
    test_x, test_y = _read_cifar_batch(folder / "test_batch")
    train_x, train_y = torch.cat(train_x), torch.cat(train_y)
    return Dataset("cifar10", train_x, train_y, test_x, test_y,
                   fingerprint(train_x, train_y, test_x, test_y))


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR's batches without running code: of the globals a pickle may name, only those that
    rebuild numpy arrays and bytes are found (the real batches name nothing else); any other, e.g. one whose
    `__reduce__` calls os.system, is refused before it is called. The files in data.root are not trusted."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR batch never holds "
                                         f"(only arrays, lists, numbers and bytes are read)")
        import codecs

        reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own, wherever this version keeps it
        return {"_reconstruct": reconstruct, "ndarray": np.ndarray, "dtype": np.dtype, "encode": codecs.encode}[name]


def _read_cifar_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        with open(path, "rb") as handle:
            batch = _BatchUnpickler(handle, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:
        raise DataError(f"cifar10: cannot read {path}: {_first_line(error)}") from None
    if len(data) != len(labels):
        raise DataError(f"cifar10: {path} holds {len(data)} images but {len(labels)} labels")
    return torch.from_numpy(data.copy()), torch.from_numpy(labels)


def _with_fixed_test_part(name: str, x: torch.Tensor, y: torch.Tensor, test_fraction: float) -> Dataset:
    train_idx, test_idx = fixed_test_indices(name, y, test_fraction)
    parts = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
    return Dataset(name, *parts, fingerprint(*parts))


def fixed_test_indices(name: str, y: torch.Tensor, test_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Sets with no test split of their own get a fixed one (seed 0): stratified for class labels, unless a class
    is too rare to be in both parts. Sorted indices of the training and test parts."""
    from sklearn.model_selection import train_test_split

    n_test = int(np.ceil(test_fraction * len(y)))
    stratify = y.numpy() if _stratifiable(y, n_test, len(y) - n_test) else None
    try:
        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_fraction,
                                               random_state=0, stratify=stratify)
    except ValueError as error:  # e.g. too few samples for the test fraction
        raise DataError(f"{name}: cannot keep a test part of {test_fraction} of {len(y)} samples: "
                        f"{_first_line(error)}") from None
    return torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(test_idx))


def _stratifiable(y: torch.Tensor, *part_sizes: int) -> bool:
    """Whether whole-number labels can keep their shares in parts of these sizes (every class twice, at least one
    sample of each class per part). Real values and label matrices are not stratified."""
    if y.dim() != 1 or y.is_floating_point() or len(y) == 0 or int(y.min()) < 0:
        return False
    counts = torch.bincount(y)
    classes = int((counts > 0).sum())
    return int(counts[counts > 0].min()) >= 2 and all(classes <= size for size in part_sizes)


def _stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    from sklearn.model_selection import train_test_split

    stratify = labels.numpy() if _stratifiable(labels, size) else None
    keep, _ = train_test_split(np.arange(len(labels)), train_size=size, random_state=seed, stratify=stratify)
    return torch.from_numpy(np.sort(keep))


# ---- the user's own data --------------------------------------------------

def load_npz(config: DataConfig) -> Dataset:
    """`data.path`: an .npz file with arrays x_train, y_train and optionally x_test, y_test."""
    path = Path(config.path)
    if not path.is_file():
        raise DataError(f"npz: no file {path} (data.path)")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            parts = {key: arrays[key] for key in arrays.files}
    except Exception as error:
        raise DataError(f"npz: cannot read {path}: {_first_line(error)}") from None
    missing = [key for key in ("x_train", "y_train") if key not in parts]
    if missing:
        raise DataError(f"npz: {path} has no {' or '.join(missing)} array (it has: {', '.join(parts) or 'none'})")
    if ("x_test" in parts) != ("y_test" in parts):
        raise DataError(f"npz: {path} has only one of x_test and y_test; give both or neither")
    return from_arrays("npz", parts["x_train"], parts["y_train"], parts.get("x_test"), parts.get("y_test"),
                       test_fraction=config.test_fraction)


NPY_FILES = ("x_train", "y_train", "x_test", "y_test")


def load_npy(config: DataConfig) -> Dataset:
    """`data.path`: a folder of x_train.npy, y_train.npy and optionally x_test.npy, y_test.npy, memory-mapped
    (never read whole into memory; object arrays, which would unpickle, are refused). Without a test part, the
    fixed one is cut out once into the cache (data.cache), not in memory."""
    folder = Path(config.path)
    if not folder.is_dir():
        raise DataError(f"npy: no folder {folder} (data.path)")
    present = {name: folder / f"{name}.npy" for name in NPY_FILES if (folder / f"{name}.npy").is_file()}
    missing = [f"{name}.npy" for name in ("x_train", "y_train") if name not in present]
    if missing:
        raise DataError(f"npy: {folder} has no {' or '.join(missing)}")
    if ("x_test" in present) != ("y_test" in present):
        raise DataError(f"npy: {folder} has only one of x_test.npy and y_test.npy; give both or neither")
    arrays = {}
    for name, path in present.items():
        try:
            arrays[name] = np.load(path, mmap_mode="c", allow_pickle=False)
        except Exception as error:  # a truncated header, an object array (pickles): one line
            raise DataError(f"npy: cannot map {path}: {_first_line(error)}") from None
    if "x_test" in arrays or not config.cache:
        return from_arrays("npy", *arrays.values(), test_fraction=config.test_fraction)

    def build(staging: Path | None) -> tuple[dict[str, np.ndarray], str]:
        x, y = _checked_part("npy", "train", arrays["x_train"], arrays["y_train"])
        train_idx, test_idx = fixed_test_indices("npy", torch.from_numpy(y), config.test_fraction)
        parts = {}
        for part, source, index in zip(data_cache.PARTS, (x, y, x, y), (train_idx, train_idx, test_idx, test_idx)):
            index = index.numpy()
            parts[part] = _new_array(staging, part, source.dtype, (len(index), *source.shape[1:]))
            for start in range(0, len(index), 4096):  # rows in order, a chunk at a time
                parts[part][start:start + 4096] = source[index[start:start + 4096]]
        return parts, fingerprint(*(parts[part] for part in data_cache.PARTS))

    return _decoded_once(config, "npy", f"the test part of npy {folder}", [_stamp(str(p)) for p in present.values()],
                         build)


def load_user_data(config: DataConfig) -> Dataset:
    """`data.name=module:function`: the function, called with `data.args`, returns (x, y) or
    (x_train, y_train, x_test, y_test) as NumPy arrays or tensors."""
    loader = user_code.load(config.name, "data.name")
    try:
        arrays = loader(**config.args)
    except Exception as error:  # the user's code: whatever it raises is bad input, said in one line
        raise DataError(f"data.name={config.name}: the loader raised {type(error).__name__}: "
                        f"{_first_line(error)} (args {config.args})") from None
    if not isinstance(arrays, tuple | list) or len(arrays) not in (2, 4):
        raise DataError(f"data.name={config.name}: the loader must return (x, y) or "
                        f"(x_train, y_train, x_test, y_test), not {type(arrays).__name__}")
    return from_arrays(config.name, *arrays, test_fraction=config.test_fraction)


def from_arrays(name: str, x_train, y_train, x_test=None, y_test=None, test_fraction: float = 0.2) -> Dataset:
    """A Dataset from the user's arrays: uint8 images (N, H, W) or (N, C, H, W), or float samples of any
    shape (vectors, signals); targets: class labels, real values (N,) or (N, D), or a (N, C) 0/1 label matrix.
    Without a test part, a fixed one is made (stratified for class labels)."""
    x_train, y_train = _checked_part(name, "train", x_train, y_train)
    if x_test is None:
        return _with_fixed_test_part(name, torch.from_numpy(x_train), torch.from_numpy(y_train), test_fraction)
    x_test, y_test = _checked_part(name, "test", x_test, y_test)
    if x_test.shape[1:] != x_train.shape[1:] or x_test.dtype != x_train.dtype:
        raise DataError(f"{name}: x_test samples are {x_test.dtype} {list(x_test.shape[1:])}, "
                        f"x_train's {x_train.dtype} {list(x_train.shape[1:])}")
    if y_test.shape[1:] != y_train.shape[1:]:
        raise DataError(f"{name}: y_test's targets are {list(y_test.shape[1:]) or 'one value'} per sample, "
                        f"y_train's {list(y_train.shape[1:]) or 'one value'}")
    if y_test.dtype != y_train.dtype:  # whole numbers in one part, real values in the other: values, both
        y_train, y_test = y_train.astype(np.float32), y_test.astype(np.float32)
    parts = [torch.from_numpy(array) for array in (x_train, y_train, x_test, y_test)]
    return Dataset(name, *parts, fingerprint(*parts))


def _checked_part(name: str, part: str, x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _samples(name, f"x_{part}", x), _targets(name, f"y_{part}", y)
    _same_length(name, f"x_{part}", x, f"y_{part}", y)
    return x, y


def _samples(name: str, what: str, x) -> np.ndarray:
    x = np.asarray(x.cpu() if isinstance(x, torch.Tensor) else x)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{name}: {what} must hold samples along its first axis, got shape {list(x.shape)}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x[:, None] if x.ndim == 3 else x)  # images get their channel axis
    if not np.issubdtype(x.dtype, np.number) and x.dtype != np.bool_:
        raise DataError(f"{name}: {what} must be numbers, got {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)  # no copy of float32 samples (a memory-mapped file stays one)
    rows = max(1, (64 << 20) // max(1, x[:1].nbytes))
    if not all(np.isfinite(x[start:start + rows]).all() for start in range(0, len(x), rows)):
        raise DataError(f"{name}: {what} holds NaN or infinite values")
    return x


def _targets(name: str, what: str, y) -> np.ndarray:
    """One target per sample (N,) or a row of them (N, D): whole numbers become int64 labels (the task decides
    whether they are classes), anything else float32."""
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
        raise DataError(f"{name}: {what} must be one target per sample (N,) or a row of them (N, D), "
                        f"got shape {list(y.shape)}")
    if not np.issubdtype(y.dtype, np.number) and y.dtype != np.bool_:
        raise DataError(f"{name}: {what} must be numbers, got {y.dtype}")
    if y.dtype != np.bool_ and not np.isfinite(y).all():
        raise DataError(f"{name}: {what} holds NaN or infinite values")
    whole = np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
    if y.ndim == 1 and whole and np.abs(y).max(initial=0) < 2**53:
        return y.astype(np.int64)
    return np.ascontiguousarray(y, dtype=np.float32)


def _same_length(name: str, x_name: str, x: np.ndarray, y_name: str, y: np.ndarray) -> None:
    if len(x) != len(y):
        raise DataError(f"{name}: {x_name} has {len(x)} samples but {y_name} has {len(y)} labels")


def load_image_folder(config: DataConfig) -> Dataset:
    """`data.root`: one folder per class of image files (torchvision's ImageFolder layout), and optionally
    `test/` with the same class folders. Images are decoded at data.resize x data.resize, or else at the first
    image's size (others resized to it, bilinearly).
    Decoded in parallel, once per machine into the cache (data.cache), or into memory."""
    root = Path(config.root)
    if not root.is_dir():
        raise DataError(f"image_folder: no folder {root} (data.root)")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir() and entry.name != "test")
    train_files = image_folder.image_files(root, classes, _files_under)
    test_files = image_folder.image_files(root / "test", classes, _files_under) if (root / "test").is_dir() else []
    if not test_files:  # the fixed test part, chosen from the labels before anything is decoded
        labels = torch.as_tensor([label for _, label in train_files])
        train_idx, test_idx = fixed_test_indices("image_folder", labels, config.test_fraction)
        train_files, test_files = [train_files[i] for i in train_idx], [train_files[i] for i in test_idx]
    what = f"{len(train_files) + len(test_files):,} images of image_folder {root}"

    def build(folder: Path | None) -> tuple[dict[str, np.ndarray], str]:
        mode, size = image_folder.image_format(train_files[0][0])
        size = (config.resize, config.resize) if config.resize else size  # decoded at the size it trains at
        shape = image_folder.sample_shape(mode, size)
        arrays = {}
        for part, files in (("train", train_files), ("test", test_files)):
            arrays[f"{part}_x"] = _new_array(folder, f"{part}_x", np.uint8, (len(files), *shape))
            image_folder.decode_into(arrays[f"{part}_x"], [path for path, _ in files], mode, size)
            arrays[f"{part}_y"] = _new_array(folder, f"{part}_y", np.int64, (len(files),))
            arrays[f"{part}_y"][:] = [label for _, label in files]
        return arrays, fingerprint(*(arrays[part] for part in data_cache.PARTS))

    files = [path for path, _ in train_files + test_files]
    return _decoded_once(config, "image_folder", what,
                         (str(root.resolve()), files, [_stamp(f) for f in files], config.resize), build)


def _built_in_once(config: DataConfig) -> Dataset:
    """mnist, fashion_mnist, cifar10 read from their files once into the cache, then mapped."""
    def build(folder: Path | None) -> tuple[dict[str, np.ndarray], str]:
        dataset = DATASETS[config.name](config)
        arrays = {}
        for part in data_cache.PARTS:
            values = getattr(dataset, part).numpy()
            arrays[part] = _new_array(folder, part, values.dtype, values.shape)
            arrays[part][:] = values
        return arrays, dataset.fingerprint

    return _decoded_once(config, config.name, f"{config.name} in {config.root}", _files_stamp(config), build)


def _new_array(folder: Path | None, part: str, dtype, shape: tuple[int, ...]) -> np.ndarray:
    """An array for a part being built: a file in the cache's staging folder, or memory (no cache)."""
    return data_cache.new_array(folder, part, dtype, shape) if folder is not None else np.empty(shape, dtype)


def _decoded_once(config: DataConfig, name: str, what: str, source: object,
                  build: Callable[[Path | None], tuple[dict[str, np.ndarray], str]]) -> Dataset:
    """The set `build` makes, from the decode-once cache (built on first use) or, with data.cache=false, made
    in memory now. `source` is everything the contents depend on (files, their sizes and times)."""
    if not config.cache:
        arrays, digest = build(None)
    else:
        def build_into(folder: Path) -> str:
            arrays, digest = build(folder)
            for array in arrays.values():
                array.flush()
            return digest

        key = data_cache.key_of(name, source, config.test_fraction)
        arrays, digest = data_cache.cached(key, what, build_into)
    parts = [torch.from_numpy(arrays[part]) for part in data_cache.PARTS]
    return Dataset(name, *parts, digest)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


DATASETS: dict[str, Callable[[DataConfig], Dataset]] = {
    "digits": load_digits,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
    "synthetic": load_synthetic,
    "npz": load_npz,
    "npy": load_npy,
    "image_folder": load_image_folder,
}
