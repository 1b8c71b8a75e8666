"""Where a data set lives while it trains, and how its batches reach the device.

In memory (the fast path, the default where the set fits): the whole set is one tensor on the training device
and a batch is an index slice of it. Streamed (data.in_memory=false, or auto when the decoded set is larger
than data.memory_budget): the set stays where it was loaded (host memory, or the memory-mapped files of the
decode-once cache) and a batch is gathered on the host, by PyTorch's DataLoader (worker processes, pinned
memory for CUDA), and copied to the device while the previous batch trains. Both paths gather the same rows
in the same order, so a deterministic run gives the same weights either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from core.config import DataConfig

GiB = 2**30


def in_memory(config: DataConfig, set_bytes: int, device: torch.device) -> bool:
    """Whether the set goes to the device whole (see the module's docstring)."""
    if config.in_memory != "auto":
        return config.in_memory == "true"
    return set_bytes <= memory_budget(config, device)


def memory_budget(config: DataConfig, device: torch.device) -> int:
    """data.memory_budget in bytes; 0 = half the device's memory (the RAM for the CPU)."""
    if config.memory_budget > 0:
        return int(config.memory_budget * GiB)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // 2
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2


def loader_workers(config: DataConfig, device: torch.device) -> int:
    if config.loader_workers >= 0:
        return config.loader_workers
    return 2 if device.type == "cuda" else 0


@dataclass(frozen=True)
class Part:
    """Rows of a stored set (x, y): all of them, or those at `index` (on x's device), gathered chunk by chunk
    and moved to the training device, so a streamed set is never copied whole."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.y) if self.index is None else len(self.index)

    def rows(self, start: int, stop: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.index is None:
            xb, yb = self.x[start:stop], self.y[start:stop]
        else:
            pick = self.index[start:stop]
            xb, yb = self.x.index_select(0, pick), self.y.index_select(0, pick)
        return xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    def chunks(self, size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self), size):
            yield self.rows(start, start + size, device)

    def targets(self) -> torch.Tensor:
        """The part's targets on the host (they are small beside the samples)."""
        return (self.y if self.index is None else self.y.index_select(0, self.index)).cpu()

    def gather(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """All of the part at once (a few samples: the checks of the user's code)."""
        return self.rows(0, len(self), device)


class OnDevice:
    """Batches of a set that is on the training device: index slices of it."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield self.x.index_select(0, index), self.y.index_select(0, index)  # whole rows: faster than x[index]

    def close(self) -> None:
        pass


class _Rows(torch.utils.data.Dataset):
    """The DataLoader's view of a stored set: one item is a whole batch, gathered by its indices."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x.index_select(0, index), self.y.index_select(0, index)


class _EpochOrder(torch.utils.data.Sampler):
    """The batches of the current epoch (set before each epoch), for a loader whose workers outlive epochs."""

    def __init__(self):
        self.batches: list[torch.Tensor] = []

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Streamed:
    """Batches gathered on the host by a DataLoader and copied to the device (non-blocking from pinned memory),
    in the order the trainer drew on the device."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, workers: int):
        self.device, self.order = device, _EpochOrder()
        self.loader = torch.utils.data.DataLoader(
            _Rows(x, y), sampler=self.order, batch_size=None, num_workers=workers,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
            generator=torch.Generator())  # its own: else each epoch's iterator draws a seed from the global
        # RNG, which dropout draws from, and a streamed run's dropout masks would differ from an in-memory run's

    def batches(self, order: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        self.order.batches = list(order.cpu().split(batch_size))
        for xb, yb in self.loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def close(self) -> None:
        iterator = getattr(self.loader, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()  # persistent workers end with the fit, not with the process
