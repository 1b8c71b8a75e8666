"""Tracking on vs off: the same training with per-step logging to MLflow and a live Visdom server.

`python -m benchmarks.tracking_overhead [--quick]`. Both sides train the notes' MLP
on synthetic MNIST-shaped data; the figure is the ratio of training seconds.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from benchmarks.study import temporary_store
from benchmarks.table import Row, main_for
from core import visdom_server
from core.config import Config
from core.runs import tracked_fit
from core.train import fit, prepare
from tests.helpers import free_port


def config(epochs: int, samples: int, url: str) -> Config:
    return Config().apply({"data.name": "synthetic", "data.shape": [1, 28, 28], "data.samples": samples,
                           "model.hidden": [200, 200], "optim.lr": 0.01, "optim.momentum": 0.0,
                           "train.batch_size": 200, "train.epochs": epochs, "device": "cpu",
                           "track.visdom": "on", "track.visdom_url": url,
                           "track.log_model": False, "track.figures": False})


def training_seconds(result) -> float:
    return sum(h["epoch_seconds"] for h in result.history)


def run(quick: bool = False) -> list[Row]:
    """Off and on alternate, so drift of this machine's speed hits both sides; the figure is the median of
    the pairs' ratios, which one disturbed run cannot move."""
    epochs, pairs, samples = (2, 4, 30_000) if quick else (3, 8, 60_000)
    with tempfile.TemporaryDirectory() as folder, temporary_store():
        process, url = visdom_server.start(free_port(), env_path=Path(folder) / "visdom")
        try:
            settings = config(epochs, samples, url)
            fit(prepare(settings))  # warm-up
            off, on = [], []
            for _ in range(pairs):
                off.append(training_seconds(fit(prepare(settings))))
                tracked = tracked_fit(prepare(settings)).result
                on.append(training_seconds(tracked))
        finally:
            process.terminate()
            process.wait(10)
    ratio = statistics.median(b / a for a, b in zip(off, on))
    return [Row(f"tracking on (MLflow + live Visdom, {tracked.steps} steps logged) vs off, median of {pairs} pairs",
                ratio, "<= 1.05", ratio <= 1.05,
                f"off {statistics.median(off):.2f} s, on {statistics.median(on):.2f} s of training (medians)")]


if __name__ == "__main__":
    main_for(run)
