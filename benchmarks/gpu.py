"""The GPU path: only when a CUDA device is present (else no rows).

Seconds per epoch of the notes' MNIST MLP on 60,000 MNIST-shaped images,
images per second of the notes' AlexNet on CIFAR-shaped data (batch 500), and
our trainer against a minimal hand-written GPU loop on the same model.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from benchmarks.table import Row, main_for
from core.config import Config
from core.train import fit, prepare


def mlp_config(epochs: int) -> Config:
    return Config().apply({"data.name": "synthetic", "data.shape": [1, 28, 28], "data.samples": 61_000,
                           "data.test_fraction": 1000 / 61_000, "split.val_fraction": 0.01,
                           "model.hidden": [200, 200], "optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.0,
                           "train.batch_size": 200, "train.epochs": epochs, "device": "cuda", "track.visdom": "off"})


def alexnet_config(epochs: int, samples: int) -> Config:
    return Config().apply({"data.name": "synthetic", "data.shape": [3, 96, 96], "data.samples": samples,
                           "model.name": "alexnet_cifar", "model.dropout": 0.5, "optim.name": "adam", "optim.lr": 1e-3,
                           "train.batch_size": 500, "train.epochs": epochs, "device": "cuda", "track.visdom": "off",
                           "track.flush_every": 1000})


def hand_written_seconds(config: Config, epochs: int) -> float:
    """The least a GPU loop can do: data on the device, bf16 autocast, fused SGD, no syncs."""
    run = prepare(config)
    model, data = run.model, run.data
    index = torch.as_tensor(run.train_idx, device="cuda")
    x = run.normalize(data.train_x[index])
    y = data.train_y[index]
    optimizer = torch.optim.SGD(model.parameters(), lr=config.optim.lr, fused=True)
    times = []
    for _ in range(epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        order = torch.randperm(len(y), device="cuda")
        for batch in range(0, len(y), config.train.batch_size):
            pick = order[batch:batch + config.train.batch_size]
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = nn.functional.cross_entropy(model(x[pick]).float(), y[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def run(quick: bool = False) -> list[Row]:
    if not torch.cuda.is_available():
        return []
    epochs = 2 if quick else 5
    ours = min(h["epoch_seconds"] for h in fit(mlp_config(epochs)).history)
    hand = hand_written_seconds(mlp_config(epochs), epochs)
    rows = [Row("GPU: notes' MNIST MLP, seconds per epoch (60k images)", ours, "(figure)", True, f"{ours:.3f} s"),
            Row("GPU: our trainer vs a hand-written loop (MNIST MLP)", ours / hand, "<= 1.10", ours / hand <= 1.10,
                f"ours {ours:.3f} s, hand-written {hand:.3f} s per epoch")]
    samples = 10_000 if quick else 50_000
    result = fit(alexnet_config(2, samples))
    seconds = min(h["epoch_seconds"] for h in result.history)
    train_images = round(samples * 0.8 * 0.8)
    rows.append(Row("GPU: notes' AlexNet at 96x96, batch 500, images per second", train_images / seconds, "(figure)",
                    True, f"{train_images} images in {seconds:.2f} s"))
    return rows


if __name__ == "__main__":
    main_for(run)
