"""The CUDA path (marker `gpu`; `make test` leaves these out, and they skip without a CUDA device)."""

from __future__ import annotations

import warnings

import pytest
import torch

from core.config import Config
from core.train import EpochState, fit, prepare, train_one_epoch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def gpu_config(**extra) -> Config:
    return Config().apply({"data.name": "synthetic", "data.samples": 2000, "data.shape": [1, 16, 16],
                           "model.name": "lenet5", "train.epochs": 2, "device": "cuda", "track.visdom": "off",
                           **extra})


def test_data_model_and_optimizer_live_on_the_gpu():
    run = prepare(gpu_config())
    assert run.data.train_x.is_cuda and run.data.train_x.dtype == torch.uint8
    assert next(run.model.parameters()).is_cuda
    assert run.model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    result = fit(run)
    assert result.metrics["final_val_acc"] > 0.5


def test_no_host_sync_per_step():
    from torch import nn

    from core.train import make_optimizer

    config = gpu_config(**{"track.flush_every": 10_000, "train.batch_size": 32})
    run = prepare(config)
    optimizer = make_optimizer(run.model, config, run.device)
    assert optimizer.defaults.get("fused")
    state = EpochState(x=run.data.train_x, y=run.data.train_y, indices=torch.as_tensor(run.train_idx, device="cuda"),
                       batch_size=32, normalize=run.normalize, optimizer=optimizer, loss_fn=nn.CrossEntropyLoss(),
                       l1=None, generator=torch.Generator(device="cuda").manual_seed(0), autocast=True,
                       augment_shift=0, flush_every=10_000, on_flush=lambda values, first: True)
    train_one_epoch(run.model, state)  # warm-up
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_one_epoch(run.model, state)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert state.step > 30 and len(syncs) <= 4  # a few per epoch, none per step
