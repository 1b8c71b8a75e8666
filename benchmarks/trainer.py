"""Our trainer against the seed notes' DataLoader loop, and its scaling with data size.

`python -m benchmarks.trainer [--quick]`. Both loops train the notes' MNIST MLP
(784-200-200-10, SGD lr 0.01, batch 200) on the same 60,000 MNIST-format images,
read from IDX files this benchmark writes; figures are seconds per epoch,
measured side by side in this one run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.table import Row, main_for
from core.config import Config
from core.train import fit
from tests.formats import write_mnist

N_TRAIN, N_TEST = 60_000, 1_000


def write_fake_mnist(root: Path) -> None:
    generator = np.random.default_rng(0)
    labels = generator.integers(0, 10, N_TRAIN + N_TEST).astype(np.uint8)
    prototypes = generator.integers(0, 256, (10, 28, 28))
    images = np.clip(prototypes[labels] + generator.normal(0, 60, (N_TRAIN + N_TEST, 28, 28)), 0, 255).astype(np.uint8)
    write_mnist(root, images[:N_TRAIN], labels[:N_TRAIN], images[N_TRAIN:], labels[N_TRAIN:])


def notes_loop_seconds_per_epoch(root: Path, epochs: int) -> float:
    """Note 002's loop: torchvision MNIST, per-sample ToTensor + Normalize, a DataLoader."""
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    loader = DataLoader(datasets.MNIST(str(root), train=True, download=False, transform=transform),
                        batch_size=200, shuffle=True)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 200), nn.ReLU(), nn.Linear(200, 200), nn.ReLU(),
                          nn.Linear(200, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for data, target in loader:
            loss = loss_fn(model(data), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times)


def notes_config(root: Path, epochs: int) -> Config:
    # val_fraction is as small as a holdout allows, so both loops see ~60,000 training images.
    return Config().apply({"data.name": "mnist", "data.root": str(root), "model.name": "mlp",
                           "model.hidden": [200, 200], "optim.name": "sgd", "optim.lr": 0.01,
                           "optim.momentum": 0.0, "train.batch_size": 200, "train.epochs": epochs,
                           "split.val_fraction": 0.01, "device": "cpu", "track.visdom": "off"})


def our_seconds_per_epoch(config: Config) -> tuple[float, int]:
    """Best epoch time of fit(), scaled to 60,000 training images."""
    result = fit(config)
    train_samples = round(N_TRAIN * (1 - config.split.val_fraction))
    return min(h["epoch_seconds"] for h in result.history) * N_TRAIN / train_samples, train_samples


def scaling_seconds(multiples: list[int], epochs: int) -> list[float]:
    """Seconds per epoch of fit() on 1x, 2x, ... the data (synthetic MNIST-shaped images)."""
    seconds = []
    for multiple in multiples:
        config = Config().apply({"data.name": "synthetic", "data.shape": [1, 28, 28], "data.samples": 5000 * multiple,
                                 "model.hidden": [200, 200], "train.batch_size": 200, "train.epochs": epochs,
                                 "device": "cpu", "track.visdom": "off"})
        seconds.append(min(h["epoch_seconds"] for h in fit(config).history))
    return seconds


def run(quick: bool = False) -> list[Row]:
    epochs = 1 if quick else 3
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_fake_mnist(root)
        notes = notes_loop_seconds_per_epoch(root, epochs)
        ours, _ = our_seconds_per_epoch(notes_config(root, epochs + 1))
    rows = [Row("trainer vs the notes' DataLoader loop (MNIST MLP, 60k images, s/epoch)", notes / ours, ">= 10",
                notes / ours >= 10, f"notes {notes:.2f} s, ours {ours:.3f} s per epoch")]
    multiples = [1, 2, 4] if quick else [1, 2, 4, 8]
    seconds = scaling_seconds(multiples, 2 if quick else 3)
    per_unit = [s / m for s, m in zip(seconds, multiples)]
    spread = max(per_unit) / min(per_unit)
    rows.append(Row(f"trainer time per epoch at {'/'.join(f'{m}x' for m in multiples)} data, per 1x (max/min)",
                    spread, "<= 1.5 (linear)", spread <= 1.5,
                    ", ".join(f"{m}x: {s:.3f} s" for m, s in zip(multiples, seconds))))
    return rows


if __name__ == "__main__":
    main_for(run)
