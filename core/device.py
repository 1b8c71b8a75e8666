"""The device side of training: the GPUs a study's workers get, the device a rerun or resume uses, random
streams in checkpoints, settings for reruns, and torch.compile once per fit.

CUBLAS_WORKSPACE_CONFIG is set in core/__init__.py, before torch is imported: cuBLAS reads it once, at its
first call, so a deterministic fit after any earlier CUDA matmul of the process would otherwise raise.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from core.errors import ConfigError, UserError


def device_type(setting: str) -> str:
    """The device type a `device` setting trains on here (train.select_device's choice, without its check)."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def checkpoint_device(saved_rng: dict[str, Any]) -> str:
    """The device type a checkpoint's trainer generator lived on ("cpu" or "cuda"). Checkpoints before this
    field say it by their state's size: a CUDA generator's (Philox seed and offset) is 16 bytes, a CPU one's
    (Mersenne Twister) 5,056."""
    if "device" in saved_rng:
        return str(saved_rng["device"])
    return "cuda" if saved_rng["generator"].numel() == 16 else "cpu"


def resume_device(device: str, saved: dict[str, Any]) -> str:
    """The device setting a `train --resume` goes on with: device=auto trains where the checkpoint was made
    (a CPU run resumed on a machine with a GPU stays on the CPU); a fixed device stays. A CUDA checkpoint where
    there is no CUDA device is one line, before any run."""
    made_on = checkpoint_device(saved["rng"])
    if made_on == "cuda" and not torch.cuda.is_available():
        raise ConfigError("the checkpoint was trained on cuda; there is no CUDA device here: its random streams "
                          "do not carry across device types, so resume it on a machine with one")
    return made_on if device == "auto" else device


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream training draws from: torch (CPU, CUDA), numpy, and the trainer's own generator."""
    _, keys, position, has_gauss, cached = np.random.get_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda, "generator": generator.get_state(),
            "device": generator.device.type,
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}}  # tensors: the safe loader


def set_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    """Put back what rng_states saved. A checkpoint of another device type is one ConfigError line: the batch
    order's stream (Philox on CUDA, Mersenne Twister on the CPU) cannot go on in the other kind."""
    saved = checkpoint_device(states)
    if saved != generator.device.type or states["generator"].numel() != generator.get_state().numel():
        raise ConfigError(f"the checkpoint was trained on {saved} and this resume trains on "
                          f"{generator.device.type}: its random streams do not carry across device types; "
                          f"resume it with device={saved} on a machine that has it")
    torch.set_rng_state(states["torch"])
    set_cuda_states(states["cuda"])
    generator.set_state(states["generator"])
    numpy_state = states["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))


def set_cuda_states(saved: list[torch.Tensor]) -> int:
    """The CUDA generators' states, device by device, for the devices both processes have; returns how many.
    Training uses device 0 (the first visible), so a resume with more or fewer GPUs than the checkpoint's
    process still goes on exactly; only the unused devices' streams are left as they are."""
    if not saved or not torch.cuda.is_available():
        return 0
    shared = min(len(saved), torch.cuda.device_count())
    for index in range(shared):
        torch.cuda.set_rng_state(saved[index], index)
    return shared


def rerun_device(logged: str, asked: str | None) -> str:
    """The device a `reproduce` or `evaluate` reruns on: `asked` (--device) when given, else the logged run's
    device type (its tag `device`, e.g. "cuda:NVIDIA H100" or "cpu:x86_64"), so that a CPU run checked on a
    machine with a GPU stays on the CPU (fp32, not bf16). A CUDA run where there is none is one line."""
    if asked not in (None, "logged"):
        return asked
    kind = logged.partition(":")[0]
    if kind not in ("cpu", "cuda"):
        return "auto"  # a run without the tag
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"the run trained on {logged} and there is no CUDA device here; --device cpu to rerun "
                          f"it on the CPU anyway (expect other numbers)")
    return kind


def deterministic_reruns() -> None:
    """cuDNN settings for reruns (reproduce, evaluate): one fixed algorithm per convolution. With benchmark on,
    cuDNN times candidates and may pick another algorithm on a rerun, and with it other last bits."""
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


def worker_gpus(asked: list[str] | None) -> list[str]:
    """The GPUs a study's workers get, as CUDA_VISIBLE_DEVICES entries. `--gpus` numbers are this process's
    device numbers (cuda:0, cuda:1, ...: under CUDA_VISIBLE_DEVICES=2,3, 0 is physical GPU 2), each checked
    against the devices there are; UUIDs (GPU-..., MIG-...) go through as given. None: every visible one."""
    count = torch.cuda.device_count()  # asks the driver; starts no CUDA context
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = [gpu.strip() for gpu in listed.split(",") if gpu.strip()][:count] if listed is not None \
        else [str(index) for index in range(count)]
    if asked is None:
        return visible
    missing = [gpu for gpu in asked if gpu.isdigit() and int(gpu) >= len(visible)]
    if missing:
        there = f"GPUs 0-{len(visible) - 1}" if visible else "no CUDA device"
        mapped = f" (CUDA_VISIBLE_DEVICES={listed})" if listed is not None else ""
        raise UserError(f"--gpus {','.join(asked)}: GPU {missing[0]} is not there; this process sees {there}{mapped}")
    return [visible[int(gpu)] if gpu.isdigit() else gpu for gpu in asked]


class Compiler:
    """torch.compile for one fit. Dynamo's caches are process-wide: a study's trials (each a new model, often
    of another width) would pile up recompiles until Dynamo gives up and runs eager without a word, so they
    are reset first. What compiling took is read from Dynamo's own timers (`extra`: compile_seconds,
    compiled_graphs): compiling happens inside an epoch's first steps, and `fit` takes it out of that epoch's
    epoch_seconds."""

    def __init__(self, model: nn.Module, enabled: bool):
        self.enabled = enabled
        self.module = model
        if enabled:
            torch._dynamo.reset()
            self.started_seconds, self.started_graphs = compile_seconds(), compiled_graphs()
            self.asked_at = self.started_seconds
            self.module = torch.compile(model)

    def seconds_since_last_asked(self) -> float:
        """Compile time since the last call (the first: since the fit began): what an epoch spent compiling."""
        if not self.enabled:
            return 0.0
        total = compile_seconds()
        spent, self.asked_at = total - self.asked_at, total
        return spent

    def extra(self) -> dict[str, float]:
        if not self.enabled:
            return {}
        return {"compile_seconds": compile_seconds() - self.started_seconds,
                "compiled_graphs": float(compiled_graphs() - self.started_graphs)}


COMPILE_TIMERS = ("_compile.compile_inner", "backward._backward_impl")  # forward (backend included); the backward,
# which AOTAutograd compiles lazily, at the first backward, outside the first timer


def compile_seconds() -> float:
    """Dynamo's and AOTAutograd's total compile time so far in this process (every frame, both directions)."""
    names, values = torch._dynamo.utils.compile_times(repr="csv", aggregate=True)
    timers = dict(zip(names, values))
    return sum(float(timers.get(name, 0.0)) for name in COMPILE_TIMERS)


def compiled_graphs() -> int:
    """Graphs Dynamo compiled so far: one per frame, plus one per recompile (a guard that failed)."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
