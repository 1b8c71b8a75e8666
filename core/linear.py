"""A Linear layer whose float32 matmuls on the CPU can run in oneDNN rather than MKL.

Why: PyTorch sends float32 CPU matmuls to MKL, and MKL takes its fast code
paths on Intel CPUs only. oneDNN (also in every x86 PyTorch build, behind its
convolutions) picks its kernels from the CPU's features instead. On an AMD
EPYC with AVX-512 its matmuls for the notes' MLP ran about 1.8x MKL's; on an
Intel Xeon, MKL's ran about 1.25x oneDNN's. So `train.cpu_linear=auto` (the
default) takes oneDNN on x86 CPUs that are not Intel's and MKL elsewhere;
`onednn` and `aten` force one. The results agree with `nn.Linear` to float32
rounding, not bit for bit, so the resolved choice is logged with the run.

Only plain float32 2-D inputs on the CPU, outside autocast and torch.compile,
take the oneDNN path; everything else is `nn.Linear` unchanged.
"""

from __future__ import annotations

import platform

import torch
from torch import nn

from core import provenance


def onednn_available() -> bool:
    """Whether this PyTorch build has oneDNN's linear operator (the x86 builds do)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ONEDNN = onednn_available()


def _matmul_transposed(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """a @ b.T (+ bias), by oneDNN; a and b may be transposed views."""
    return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _matmul_transposed(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        grad_x = _matmul_transposed(grad, weight.t()) if needs_x else None  # grad @ weight
        grad_weight = _matmul_transposed(grad.t(), x.t()) if needs_weight else None  # grad.T @ x
        grad_bias = grad.sum(0) if ctx.has_bias and needs_bias else None
        return grad_x, grad_weight, grad_bias


class Linear(nn.Linear):
    """`nn.Linear` with the same parameters and state dict; `backend` says who does its CPU matmuls."""

    backend = "auto"  # resolved at first use; set per layer by set_backend()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.backend == "auto":
            self.backend = resolve_backend("auto")
        if self.backend == "onednn" and _takes_onednn_path(x, self.weight):
            return _OneDnnLinear.apply(x, self.weight, self.bias)
        return super().forward(x)


# A oneDNN call costs ~11 us more than an MKL one before it multiplies anything, so
# products smaller than this (multiply-adds; e.g. 200x200 -> 10) stay with MKL, which
# was faster below it on the EPYC the figures above come from.
MIN_ONEDNN_MACS = 2**21


def _takes_onednn_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (ONEDNN and x.device.type == "cpu" and x.dim() == 2 and x.dtype == weight.dtype == torch.float32
            and x.shape[0] * weight.numel() >= MIN_ONEDNN_MACS
            and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling())


def cpu_vendor() -> str:
    """The x86 CPU's vendor string (e.g. GenuineIntel, AuthenticAMD); "" where it cannot be read."""
    return provenance.cpuinfo("vendor_id")


def resolve_backend(backend: str) -> str:
    """"auto" becomes "onednn" on x86 CPUs whose vendor MKL does not tune for, else "aten"."""
    if backend != "auto":
        return backend
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return "onednn" if ONEDNN and x86 and cpu_vendor() not in ("", "GenuineIntel") else "aten"


def set_backend(model: nn.Module, backend: str) -> str:
    """Choose the library behind every `Linear` of `model`: "onednn", "aten" (nn.Linear's own) or "auto".

    Returns the library chosen ("auto" resolved).
    """
    backend = resolve_backend(backend)
    for module in model.modules():
        if isinstance(module, Linear):
            module.backend = backend
    return backend
