"""Data sets read from the real on-disk formats (tiny files written here), and the splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.config import DataConfig, SplitConfig
from core.data import channel_stats, load_dataset
from core.errors import ConfigError, DataError
from core.splits import holdout, kfold, make_split
from tests.formats import write_cifar10, write_mnist


def tiny_images(n: int, shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    generator = np.random.default_rng(seed)
    return generator.integers(0, 256, (n, *shape), dtype=np.uint8), generator.integers(0, 10, n).astype(np.uint8)


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_files_read_through_torchvision(tmp_path, name, folder):
    train, test = tiny_images(30, (28, 28)), tiny_images(10, (28, 28), seed=1)
    write_mnist(tmp_path, *train, *test, folder=folder)
    data = load_dataset(DataConfig(name=name, root=str(tmp_path)))
    assert data.train_x.shape == (30, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert torch.equal(data.train_x[:, 0], torch.from_numpy(train[0]))
    assert torch.equal(data.test_y, torch.from_numpy(test[1]).long())


def test_cifar10_pickles(tmp_path):
    train, test = tiny_images(20, (3, 32, 32)), tiny_images(5, (3, 32, 32), seed=1)
    write_cifar10(tmp_path, *train, *test)
    data = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert data.train_x.shape == (20, 3, 32, 32)
    assert torch.equal(data.train_x, torch.from_numpy(train[0]))
    resized = load_dataset(DataConfig(name="cifar10", root=str(tmp_path), resize=48))
    assert resized.train_x.shape == (20, 3, 48, 48) and resized.test_x.dtype == torch.uint8


@pytest.mark.parametrize("name, expected", [("mnist", "train-images-idx3-ubyte"), ("fashion_mnist", "t10k-labels"),
                                            ("cifar10", "data_batch_1")])
def test_missing_files_name_what_is_expected_where(tmp_path, name, expected):
    with pytest.raises(DataError) as error:
        load_dataset(DataConfig(name=name, root=str(tmp_path / "nowhere")))
    assert expected in str(error.value) and "nowhere" in str(error.value)


def test_a_corrupted_file_is_a_data_error(tmp_path):
    write_mnist(tmp_path, *tiny_images(30, (28, 28)), *tiny_images(10, (28, 28)))
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DataError):
        load_dataset(DataConfig(name="mnist", root=str(tmp_path)))


def test_fingerprint_changes_with_one_pixel(tmp_path):
    images, labels = tiny_images(30, (28, 28))
    write_mnist(tmp_path, images, labels, *tiny_images(10, (28, 28)))
    before = load_dataset(DataConfig(name="mnist", root=str(tmp_path))).fingerprint
    images[3, 4, 5] ^= 1
    write_mnist(tmp_path, images, labels, *tiny_images(10, (28, 28)))
    assert load_dataset(DataConfig(name="mnist", root=str(tmp_path))).fingerprint != before


def test_digits_has_a_fixed_test_part_and_a_stratified_subset():
    data = load_dataset(DataConfig(name="digits"))
    assert data.input_shape == (1, 8, 8) and len(data.test_y) == 360 and data.train_x.max() == 255
    small = load_dataset(DataConfig(name="digits", train_size=100))
    assert len(small.train_y) == 100 and torch.bincount(small.train_y).min() >= 9
    assert torch.equal(small.test_y, data.test_y)


def test_synthetic_images_and_signals():
    images = load_dataset(DataConfig(name="synthetic", shape=[1, 8, 8], samples=100))
    signals = load_dataset(DataConfig(name="synthetic", shape=[2, 32], samples=100))
    assert images.train_x.dtype == torch.uint8 and signals.train_x.dtype == torch.float32
    assert signals.input_shape == (2, 32) and len(images.train_y) + len(images.test_y) == 100


def test_channel_stats():
    x = torch.stack([torch.zeros(2, 2), torch.full((2, 2), 255.0)]).unsqueeze(1).to(torch.uint8)
    mean, std = channel_stats(x)
    assert mean.flatten().tolist() == pytest.approx([0.5]) and std.shape == (1, 1, 1, 1)


# ---- splits -------------------------------------------------------------------------

LABELS = np.repeat(np.arange(4), [40, 30, 20, 10])


@pytest.mark.parametrize("stratified", [False, True])
def test_folds_partition_the_data_and_repeat_with_the_seed(stratified):
    folds = kfold(LABELS, 5, seed=3, stratified=stratified)
    validation = np.concatenate([val for _, val in folds])
    assert sorted(validation) == list(range(len(LABELS)))
    for train, val in folds:
        assert not set(train) & set(val) and len(train) + len(val) == len(LABELS)
    again = kfold(LABELS, 5, seed=3, stratified=stratified)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = kfold(LABELS, 5, seed=4, stratified=stratified)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_stratification_holds_class_ratios():
    for _, val in kfold(LABELS, 5, seed=0, stratified=True):
        assert np.bincount(LABELS[val]).tolist() == [8, 6, 4, 2]
    _, val = holdout(LABELS, 0.25, seed=0, stratify=True)
    counts = np.bincount(LABELS[val])
    assert counts.tolist() == [10, 8, 5, 2] or abs(counts - [10, 7.5, 5, 2.5]).max() <= 1


def test_bad_k():
    with pytest.raises(ConfigError, match="rarest class"):
        kfold(LABELS, 11, seed=0, stratified=True)
    with pytest.raises(ConfigError, match="training samples"):
        make_split(5, LABELS[:5], SplitConfig(kind="kfold", k=6, fold=0), seed=0)
