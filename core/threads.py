"""How many intra-op threads a fit uses on the CPU, chosen for the machine instead of left to the user.

In order: `train.threads` when set (> 0); else the user's environment (OMP_NUM_THREADS, which torch read at
import); else auto: one thread for a model too small for a second to pay (SMALL_MODEL_FLOPS), otherwise
this process's share of the cores it may run on (sched_getaffinity divided by the study's workers on this
machine). The choice is the run's tag `torch_threads` (and `torch_threads_from`: why). Torch-free but for `apply`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Below this many floating-point operations in one sample's forward pass, one thread. Measured on a shared 2-core
# EPYC VM, 20-epoch digits fits, median of 5, 1 thread against 2 (the machine otherwise quiet): mlp [200, 200]
# (110k FLOPs) 0.35 s against 1.26 s, mlp [512, 512] (600k) 0.83 s against 0.80 s, small_cnn (632k) 1.53 s against
# 1.02 s. Parameters are no measure: small_cnn has 21k, the [200, 200] mlp 56k.
SMALL_MODEL_FLOPS = 500_000
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")

_workers = 1  # the study's worker processes on this machine; set in each worker (set_workers)


@dataclass(frozen=True)
class Threads:
    """The number of intra-op threads and why (train.threads, OMP_NUM_THREADS, small model, cores/workers)."""

    count: int
    why: str


def set_workers(workers: int) -> None:
    """This process is one of `workers` training side by side on this machine (a study worker)."""
    global _workers
    _workers = max(1, workers)


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's), else all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def from_environment(environ: Mapping[str, str]) -> tuple[int, str] | None:
    """The thread count the user's environment sets, if any (a whole number above zero)."""
    for name in ENVIRONMENT:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return None


def choose(setting: int, flops: int, workers: int | None = None, cores: int | None = None,
           environ: Mapping[str, str] | None = None) -> Threads:
    """The intra-op threads for a fit of a model whose forward pass of one sample takes `flops`: see the module's
    docstring."""
    if setting > 0:
        return Threads(setting, "train.threads")
    found = from_environment(os.environ if environ is None else environ)
    if found is not None:
        return Threads(found[0], found[1])
    workers = _workers if workers is None else max(1, workers)
    cores = available_cores() if cores is None else max(1, cores)
    if flops < SMALL_MODEL_FLOPS:
        return Threads(1, f"small model ({flops} FLOPs a sample)")
    return Threads(max(1, cores // workers), f"{cores} cores / {workers} workers")


def apply_threads(setting: int, flops: int) -> Threads:
    """Choose (see `choose`) and set torch's intra-op threads for this process."""
    import torch

    chosen = choose(setting, flops)
    if torch.get_num_threads() != chosen.count:
        torch.set_num_threads(chosen.count)
    return chosen
