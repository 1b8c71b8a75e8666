"""data.download=true: the real download path (torchvision's classes, checksums verified) against a small HTTP
server on 127.0.0.1 that serves archives in the real formats. Only this test process swaps in the checksums
of its own files; users have no switch that skips verification."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from torchvision import datasets

from core import data as data_module
from core.config import Config, load_config
from core.data import load_dataset
from core.errors import ConfigError, DataError
from core.runs import tracked_fit
from tests.formats import write_cifar10_archive, write_mnist_archives
from tests.helpers import tiny_flat


@pytest.fixture
def server(tmp_path):
    """(folder it serves, its base URL); quiet, loopback only, stopped after the test."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def images(count: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 10
    pixels = np.clip(rng.normal(20 * labels.reshape(-1, *[1] * len(shape)), 30, (count, *shape)), 0, 255)
    return pixels.astype(np.uint8), labels.astype(np.uint8)


def serve_mnist(folder: Path, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """Serves the four archives; returns the training images and labels in them."""
    train = images(200, (28, 28), 0)
    archives = write_mnist_archives(folder, *train, *images(50, (28, 28), 1))
    monkeypatch.setattr(datasets.MNIST, "resources", [(a.name, md5(a)) for a in archives])
    return train


def test_mnist_is_fetched_verified_and_trained_from_a_mirror(tmp_path, server, monkeypatch):
    folder, url = server
    served_images, served_labels = serve_mnist(folder, monkeypatch)
    config = Config().apply(tiny_flat(**{"data.name": "mnist", "data.root": str(tmp_path / "data"),
                                         "data.download": True, "data.mirror": url}))
    run = tracked_fit(config)
    assert run.result.stop.reason == "completed" and "test_acc" in run.result.metrics
    dataset = load_dataset(config.data)
    assert np.array_equal(dataset.train_x[:, 0].numpy(), served_images)  # what was served, byte for byte
    assert np.array_equal(dataset.train_y.numpy(), served_labels)
    raw = tmp_path / "data" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    assert not list((tmp_path / "data").glob(".download-*"))  # the staging folder is gone
    (folder / "train-images-idx3-ubyte.gz").unlink()  # present files are not fetched again
    data_module._CACHE.clear()  # (or the set would come from memory, not from the files)
    assert load_dataset(config.data).num_classes == 10


def test_a_checksum_mismatch_is_one_line_and_leaves_nothing_behind(tmp_path, server, monkeypatch):
    folder, url = server
    serve_mnist(folder, monkeypatch)
    good = datasets.MNIST.resources
    monkeypatch.setattr(datasets.MNIST, "resources", [(name, "0" * 32) for name, _ in good])
    config = load_config(None, [f"data.root={tmp_path / 'data'}", "data.name=mnist", "data.download=true",
                                f"data.mirror={url}"]).data
    with pytest.raises(DataError) as error:
        load_dataset(config)
    message = str(error.value)
    assert "\n" not in message and url in message and "by hand" in message and "MNIST/raw" in message
    assert not list((tmp_path / "data").rglob("*-ubyte*"))  # nothing half-downloaded or half-extracted
    monkeypatch.setattr(datasets.MNIST, "resources", good)  # a second try starts clean and succeeds
    assert load_dataset(config).num_classes == 10


def test_no_server_is_one_line_naming_the_url(tmp_path):
    config = load_config(None, [f"data.root={tmp_path}", "data.name=fashion_mnist", "data.download=true",
                                "data.mirror=http://127.0.0.1:9/"]).data
    with pytest.raises(DataError, match="fashion_mnist: download from http://127.0.0.1:9/ failed"):
        load_dataset(config)
    assert [p.name for p in tmp_path.iterdir()] == []


def test_cifar10_archive_is_fetched_verified_and_loaded(tmp_path, server, monkeypatch):
    folder, url = server
    archive = write_cifar10_archive(folder / "cifar-10-python.tar.gz", *images(100, (3, 32, 32), 2),
                                    *images(20, (3, 32, 32), 3))
    with_files = tmp_path / "unpacked"
    import tarfile

    with tarfile.open(archive) as unpacked:
        unpacked.extractall(with_files, filter="data")
    batches = with_files / "cifar-10-batches-py"
    monkeypatch.setattr(datasets.CIFAR10, "tgz_md5", md5(archive))
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[f"data_batch_{i}", md5(batches / f"data_batch_{i}")]
                                                         for i in range(1, 6)])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5(batches / "test_batch")]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": md5(batches / "batches.meta")})
    config = load_config(None, [f"data.root={tmp_path / 'data'}", "data.name=cifar10", "data.download=true",
                                f"data.mirror={url}"]).data
    dataset = load_dataset(config)
    assert dataset.input_shape == (3, 32, 32) and len(dataset.train_y) == 100 and len(dataset.test_y) == 20


@pytest.mark.parametrize("overrides, words", [
    (["data.name=digits", "data.download=true"], ["data.download", "mnist"]),
    (["data.name=mnist", "data.mirror=somewhere"], ["data.mirror", "URL"]),
])
def test_download_keys_are_checked(overrides, words):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides)
    assert all(word in str(error.value) for word in words)
