"""core.linear: the oneDNN path agrees with nn.Linear, and the backend choice is explicit."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
import torch
from torch import nn

from core import linear, provenance
from core.config import Config
from core.errors import ConfigError
from core.train import fit

needs_onednn = pytest.mark.skipif(not linear.ONEDNN, reason="this PyTorch build has no oneDNN linear operator")


@pytest.fixture
def onednn_calls(monkeypatch) -> list[int]:
    """Counts the matrix products that go to oneDNN."""
    calls = []
    matmul = linear._matmul_transposed
    monkeypatch.setattr(linear, "_matmul_transposed", lambda *args: calls.append(1) or matmul(*args))
    return calls


def twin_layers(in_features: int, out_features: int, bias: bool = True) -> tuple[linear.Linear, nn.Linear]:
    ours = linear.Linear(in_features, out_features, bias=bias)
    ours.backend = "onednn"
    reference = nn.Linear(in_features, out_features, bias=bias)
    reference.load_state_dict(ours.state_dict())
    return ours, reference


def forward_and_grads(layer: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    out = layer(x)
    (out * torch.linspace(-1, 1, out.shape[1])).sum().backward()  # a gradient that differs per output
    return [out.detach(), x.grad] + [p.grad for p in layer.parameters()]


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_path_matches_nn_linear_forward_and_gradients(bias, onednn_calls):
    torch.manual_seed(0)
    ours, reference = twin_layers(784, 200, bias)
    x = torch.randn(200, 784)
    got, want = forward_and_grads(ours, x), forward_and_grads(reference, x)
    assert len(onednn_calls) == 3  # forward, grad of the input, grad of the weight: all in oneDNN
    assert len(got) == len(want) == (4 if bias else 3)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_small_products_and_other_inputs_stay_with_nn_linear():
    small, _ = twin_layers(20, 10)
    assert not linear._takes_onednn_path(torch.randn(8, 20), small.weight)
    big, _ = twin_layers(784, 200)
    assert linear._takes_onednn_path(torch.randn(200, 784), big.weight)
    assert not linear._takes_onednn_path(torch.randn(200, 784, dtype=torch.float64), big.weight.double())
    assert not linear._takes_onednn_path(torch.randn(4, 200, 784), big.weight)  # 3-D: nn.Linear's broadcasting
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not linear._takes_onednn_path(torch.randn(200, 784), big.weight)


def test_aten_backend_is_nn_linear_bit_for_bit():
    torch.manual_seed(0)
    model = nn.Sequential(linear.Linear(784, 200), nn.ReLU(), linear.Linear(200, 10))
    linear.set_backend(model, "aten")
    assert all(m.backend == "aten" for m in model if isinstance(m, linear.Linear))
    x = torch.randn(200, 784)
    want = nn.functional.linear(torch.relu(nn.functional.linear(x, model[0].weight, model[0].bias)),
                                model[2].weight, model[2].bias)
    assert torch.equal(model(x), want)


@pytest.mark.parametrize(("vendor", "machine", "expected"), [
    ("AuthenticAMD", "x86_64", "onednn"), ("GenuineIntel", "x86_64", "aten"),
    ("", "x86_64", "aten"), ("AuthenticAMD", "aarch64", "aten")])
def test_auto_takes_onednn_only_on_x86_cpus_mkl_does_not_tune_for(vendor, machine, expected, monkeypatch):
    monkeypatch.setattr(linear, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(linear.platform, "machine", lambda: machine)
    monkeypatch.setattr(linear, "ONEDNN", True)
    assert linear.resolve_backend("auto") == expected
    assert linear.resolve_backend("aten") == "aten" and linear.resolve_backend("onednn") == "onednn"


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists() or platform.machine() != "x86_64",
                    reason="reads the vendor_id line of an x86 Linux /proc/cpuinfo")
def test_cpu_vendor_is_read_from_proc_cpuinfo():
    assert linear.cpu_vendor() in Path("/proc/cpuinfo").read_text() and linear.cpu_vendor().isalpha()
    assert provenance.cpuinfo("no such field") == ""


def test_unknown_backend_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match="train.cpu_linear"):
        Config().apply({"train.cpu_linear": "blas"}).validate()


@needs_onednn
def test_same_seed_twice_is_identical_on_the_onednn_path(onednn_calls):
    config = Config().apply({"data.name": "synthetic", "data.samples": 400, "data.shape": [1, 28, 28],
                             "model.hidden": [200], "train.epochs": 2, "train.batch_size": 100,
                             "train.cpu_linear": "onednn", "train.deterministic": True, "device": "cpu",
                             "track.visdom": "off"})
    first, second = fit(config), fit(config)
    torch.use_deterministic_algorithms(False)
    assert onednn_calls  # the 784 -> 200 layer took the oneDNN path
    assert [h | {"epoch_seconds": 0} for h in first.history] == [h | {"epoch_seconds": 0} for h in second.history]
