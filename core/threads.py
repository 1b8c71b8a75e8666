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

# Below this many floating-point operations in one sample's forward pass, one thread. Parameters are no measure
# (small_cnn has 21k and 632k FLOPs, mlp [200, 200] 56k and 110k). Measured on a 2-core EPYC VM shared with other
# jobs (load average 2 to 6 from them), digits fits, medians, 1 thread against 2: 10 epochs, small_cnn 0.96 s against
# 6.43 s, mlp [2048, 2048] (8.7M FLOPs) 5.56 s against 14.30 s; 20 epochs in a quieter minute (my own jobs beside it),
# mlp [200, 200] 0.35 s against 1.26 s, [512, 512] (600k) 0.83 against 0.80 s, small_cnn 1.53 against 1.02 s.
# A second thread paid for no digits model under load, so the line sits above the largest one measured.
SMALL_MODEL_FLOPS = 10_000_000
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
