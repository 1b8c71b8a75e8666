"""Tracking on vs off: the same training with per-step logging to MLflow and a live Visdom server.

`python -m benchmarks.tracking_overhead [--quick]`. Both sides train the notes' MLP
on synthetic MNIST-shaped data; the figure is the ratio of training seconds.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.study import temporary_store
from benchmarks.table import Row, main_for
from core import visdom_server
from core.config import Config
from core.servers import free_port
from core.tracked import tracked_fit
from core.train import fit, prepare



def config(epochs: int, samples: int, url: str) -> Config:
    return Config().apply({"data.name": "synthetic", "data.shape": [1, 28, 28], "data.samples": samples,
                           "model.hidden": [200, 200], "optim.lr": 0.01, "optim.momentum": 0.0,
                           "train.batch_size": 200, "train.epochs": epochs, "device": "cpu",
                           "track.visdom": "on", "track.visdom_url": url,
                           "track.log_model": False, "track.figures": False})


def training_seconds(result) -> float:
    return sum(h["epoch_seconds"] for h in result.history)


def run(quick: bool = False) -> list[Row]:
    epochs, repeats, samples = (2, 2, 30_000) if quick else (3, 3, 60_000)
    with tempfile.TemporaryDirectory() as folder, temporary_store():
        process, url = visdom_server.start(free_port(), env_path=Path(folder) / "visdom")
        try:
            settings = config(epochs, samples, url)
            prepared = prepare(settings)
            fit(settings, prepared=prepared)  # warm-up
            off, on = [], []
            for _ in range(repeats):  # interleaved, so drift hits both sides
                off.append(training_seconds(fit(settings, prepared=prepare(settings))))
                tracked = tracked_fit(settings, prepared=prepare(settings)).result
                on.append(training_seconds(tracked))
        finally:
            process.terminate()
            process.wait(10)
    ratio = min(on) / min(off)
    steps = tracked.steps
    return [Row(f"tracking on (MLflow + live Visdom, {steps} steps logged) vs off", ratio, "<= 1.05", ratio <= 1.05,
                f"off {min(off):.2f} s, on {min(on):.2f} s of training")]


if __name__ == "__main__":
    main_for(run)
