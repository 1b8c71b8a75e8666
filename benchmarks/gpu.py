"""The GPU path: only when a CUDA device is present (else no rows).

Seconds per epoch of the notes' MNIST MLP on 60,000 MNIST-shaped images; our trainer against a minimal
hand-written GPU loop doing the same work (per-batch normalisation, loss and accuracy kept, validation each
epoch); the cost of train.deterministic and of torch.compile on the same MLP; images per second of the
notes' AlexNet on CIFAR-shaped data at 96x96 (batch 500). The AlexNet set is 12,000 images (4,000 with
--quick): the synthetic set is made as float32 on the host before it becomes uint8, several copies at once,
and 50,000 images of 3x96x96 took about 20 GB there.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from benchmarks.table import Row, main_for
from core.config import Config
from core.train import fit, prepare

ALEXNET_SAMPLES = {False: 12_000, True: 4_000}  # by --quick


def mlp_config(epochs: int, **extra) -> Config:
    return Config().apply({"data.name": "synthetic", "data.shape": [1, 28, 28], "data.samples": 61_000,
                           "data.test_fraction": 1000 / 61_000, "split.val_fraction": 0.01,
                           "model.hidden": [200, 200], "optim.name": "sgd", "optim.lr": 0.01, "optim.momentum": 0.0,
                           "train.batch_size": 200, "train.epochs": epochs, "device": "cuda", "track.visdom": "off",
                           **extra})


def alexnet_config(epochs: int, samples: int) -> Config:
    return Config().apply({"data.name": "synthetic", "data.shape": [3, 96, 96], "data.samples": samples,
                           "model.name": "alexnet_cifar", "model.dropout": 0.5, "optim.name": "adam", "optim.lr": 1e-3,
                           "train.batch_size": 500, "train.epochs": epochs, "device": "cuda", "track.visdom": "off",
                           "track.flush_every": 1000})


def hand_written_seconds(config: Config, epochs: int) -> float:
    """The least a GPU loop can do for the trainer's work: data on the device, each batch normalised as it is
    taken, bf16 autocast, fused SGD, losses and correct counts kept on the device, validation each epoch, one
    sync at the end of the epoch (the trainer's epoch_seconds covers the same)."""
    run = prepare(config)
    model, data, normalize = run.model, run.data, run.normalize
    train = torch.as_tensor(run.train_idx, device="cuda")
    val_x, val_y = run.part(run.val_idx).gather(run.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.optim.lr, fused=True)
    size, times = config.train.batch_size, []
    for _ in range(epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        order = train[torch.randperm(len(train), device="cuda")]
        losses, correct = torch.zeros(len(range(0, len(order), size)), device="cuda"), torch.zeros((), device="cuda")
        model.train()
        for step, batch in enumerate(range(0, len(order), size)):
            pick = order[batch:batch + size]
            xb, yb = normalize(data.train_x.index_select(0, pick)), data.train_y.index_select(0, pick)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            correct += (logits.argmax(dim=1) == yb).sum()
        validation = validate(model, normalize, val_x, val_y)
        _ = (losses.mean().item(), correct.item(), validation.tolist())  # the epoch's one sync
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def validate(model: nn.Module, normalize, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed loss and correct count over the validation part, on the device (as train.evaluate)."""
    model.eval()
    totals = torch.zeros(2, device="cuda")
    for start in range(0, len(y), 1024):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = model(normalize(x[start:start + 1024])).float()
        totals[0] += nn.functional.cross_entropy(logits, y[start:start + 1024], reduction="sum")
        totals[1] += (logits.argmax(dim=1) == y[start:start + 1024]).sum()
    return totals


def best_epoch_seconds(config: Config, skip_first: bool = False) -> tuple[float, dict[str, float]]:
    result = fit(config)
    history = result.history[1:] if skip_first and len(result.history) > 1 else result.history
    return min(h["epoch_seconds"] for h in history), result.extra


def mlp_rows(epochs: int) -> list[Row]:
    ours, _ = best_epoch_seconds(mlp_config(epochs))
    hand = hand_written_seconds(mlp_config(epochs), epochs)
    exact, _ = best_epoch_seconds(mlp_config(epochs, **{"train.deterministic": True}))
    torch.use_deterministic_algorithms(False)
    compiled, extra = best_epoch_seconds(mlp_config(epochs, **{"train.compile": True}), skip_first=True)
    return [Row("GPU: notes' MNIST MLP, seconds per epoch (60k images)", ours, "(figure)", True, f"{ours:.3f} s"),
            Row("GPU: our trainer vs a hand-written loop doing the same work (MNIST MLP)", ours / hand, "<= 1.10",
                ours / hand <= 1.10, f"ours {ours:.3f} s, hand-written {hand:.3f} s per epoch (validation included)"),
            Row("GPU: train.deterministic=true vs default (MNIST MLP, s/epoch)", exact / ours, "(figure)", True,
                f"deterministic {exact:.3f} s, default {ours:.3f} s"),
            Row("GPU: train.compile=true vs eager (MNIST MLP, s/epoch after epoch 0)", compiled / ours, "(figure)",
                True, f"compiled {compiled:.3f} s, eager {ours:.3f} s; compiling took "
                      f"{extra.get('compile_seconds', float('nan')):.1f} s, "
                      f"{extra.get('compiled_graphs', float('nan')):.0f} graphs")]


def run(quick: bool = False) -> list[Row]:
    if not torch.cuda.is_available():
        return []
    rows = mlp_rows(2 if quick else 5)
    samples = ALEXNET_SAMPLES[quick]
    result = fit(alexnet_config(2, samples))
    seconds = min(h["epoch_seconds"] for h in result.history)
    train_images = round(samples * 0.8 * 0.8)
    rows.append(Row("GPU: notes' AlexNet at 96x96, batch 500, images per second", train_images / seconds, "(figure)",
                    True, f"{train_images} images in {seconds:.2f} s (validation included)"))
    return rows


if __name__ == "__main__":
    main_for(run)
