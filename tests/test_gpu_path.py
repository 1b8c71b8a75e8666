"""The CUDA path's checks that need no GPU (issue 37): the cuBLAS setting before torch, random streams across
device types, the device of reruns and resumes, torch.compile per fit, the deterministic AlexNet pool, and the
float copies of a batch and of the statistics. What needs the card is in test_gpu.py (marker gpu)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core import device
from core.data import channel_stats
from core.errors import ConfigError
from core.models import PoolTo, check_deterministic
from core.train import Normalizer, fit
from tests.helpers import run_python, tiny_config

WATCH_TORCH_IMPORT = """
import os, sys
os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None) if {unset} else None
seen = []
class Watch:  # records the variable when torch is first imported: before any CUDA call can happen
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
sys.meta_path.insert(0, Watch())
import core.train
print(seen[0])
"""


@pytest.mark.parametrize("unset, expected", [(True, ":4096:8"), (False, ":16:8")])
def test_cublas_workspace_is_set_before_torch_is_imported_and_a_users_value_kept(unset, expected):
    result = run_python(WATCH_TORCH_IMPORT.format(unset=unset), CUBLAS_WORKSPACE_CONFIG=":16:8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_a_checkpoint_of_another_device_type_is_one_config_error():
    generator = torch.Generator().manual_seed(0)
    states = device.rng_states(generator)
    assert states["device"] == "cpu" and device.checkpoint_device(states) == "cpu"
    cuda_made = {key: value for key, value in states.items() if key != "device"}  # as before the field
    cuda_made["generator"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state: Philox seed, offset
    with pytest.raises(ConfigError, match="trained on cuda and this resume trains on cpu"):
        device.set_rng_states(cuda_made, generator)
    device.set_rng_states(states, generator)  # the same kind goes on


def test_a_resume_trains_where_its_checkpoint_was_made(monkeypatch):
    cpu_made = {"rng": device.rng_states(torch.Generator())}
    cuda_made = {"rng": {**cpu_made["rng"], "device": "cuda"}}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resume_device("auto", cpu_made) == "cpu"  # a CPU run resumed on a machine with a GPU
    assert device.resume_device("auto", cuda_made) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="trained on cuda; there is no CUDA device here"):
        device.resume_device("auto", cuda_made)


@pytest.mark.parametrize("gpus_now, restored", [(1, [0]), (2, [0, 1]), (4, [0, 1])])
def test_cuda_streams_are_put_back_for_the_devices_both_have(monkeypatch, gpus_now, restored):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus_now)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, index: calls.append(index))
    saved = [torch.zeros(16, dtype=torch.uint8), torch.ones(16, dtype=torch.uint8)]  # made with 2 GPUs
    assert device.set_cuda_states(saved) == len(restored) and calls == restored  # device 0, the trained one


def test_reruns_use_the_logged_device_type_unless_asked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.rerun_device("cpu:x86_64", None) == "cpu"  # not auto: no CUDA, no bf16, for a CPU run
    assert device.rerun_device("cuda:NVIDIA H100 80GB HBM3", "logged") == "cuda"
    assert device.rerun_device("cpu:x86_64", "cuda") == "cuda"
    assert device.rerun_device("", None) == "auto"  # a run without the tag
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cpu"):
        device.rerun_device("cuda:NVIDIA H100 80GB HBM3", None)


def test_evaluate_on_a_machine_with_a_gpu_keeps_a_cpu_run_on_the_cpu(monkeypatch):
    from core.reproduce import evaluate_logged_model
    from core.runs import tracked_fit
    from core.runs.logged import load_logged_weights

    run = tracked_fit(tiny_config(device="auto", **{"track.log_model": True}))  # trained on the CPU here
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # now "a GPU machine": auto would pick cuda
    assert load_logged_weights(run.run_id)[1].device.type == "cpu"
    torch.backends.cudnn.benchmark = True
    logged, now = evaluate_logged_model(run.run_id)
    assert now == logged and not torch.backends.cudnn.benchmark  # a rerun picks cuDNN's fixed algorithms


def test_each_compiled_fit_resets_dynamo_and_keeps_its_compile_time_apart(monkeypatch):
    resets, timer = [], iter(range(0, 1000, 100))  # Dynamo's timer: 100 s of compiling per reading
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    monkeypatch.setattr(torch, "compile", lambda model: model)  # the real one needs a minute on 2 cores
    monkeypatch.setattr(device, "compile_seconds", lambda: float(next(timer)))
    for width in (8, 16):  # two trials of a study, of two widths
        result = fit(tiny_config(**{"train.compile": True, "model.hidden": [width], "train.epochs": 1}))
        assert {"compile_seconds", "compiled_graphs"} <= set(result.extra)
        assert result.extra["compile_seconds"] == 200 and result.history[0]["epoch_seconds"] < -50  # taken out
    assert len(resets) == 2
    assert "compile_seconds" not in fit(tiny_config(**{"train.epochs": 1})).extra and len(resets) == 2


@pytest.mark.parametrize("size", [(6, 6), (12, 18), (2, 2), (3, 3), (1, 1)])
def test_the_alexnet_pool_is_adaptive_average_pooling_exactly(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64, requires_grad=True)
    y = x.detach().clone().requires_grad_()
    pool = PoolTo((6, 6))
    ours, theirs = pool(x), nn.AdaptiveAvgPool2d((6, 6))(y)
    assert torch.equal(ours, theirs) and not pool.adaptive
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(x.grad, y.grad)


def test_alexnet_deterministic_on_cuda_is_refused_only_where_the_pool_needs_the_adaptive_kernel():
    from core.models import build_model

    config = tiny_config(**{"model.name": "alexnet_cifar", "model.channels": [4] * 5}).model
    at_96 = build_model(config, (3, 96, 96), 10)  # 2x2 maps: repeated to 6x6
    check_deterministic(at_96, torch.device("cuda"), deterministic=True)
    at_160 = build_model(config, (3, 160, 160), 10)  # 4x4 maps: neither divides 6
    check_deterministic(at_160, torch.device("cpu"), deterministic=True)
    check_deterministic(at_160, torch.device("cuda"), deterministic=False)
    with pytest.raises(ConfigError, match="no deterministic CUDA kernel"):
        check_deterministic(at_160, torch.device("cuda"), deterministic=True)


def test_normalizer_makes_one_float_copy_in_channels_last():
    x = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    mean, std = channel_stats(x)
    out = Normalizer(mean, std, is_image=True, channels_last=True)(x)
    assert out.dtype == torch.float32 and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, (x.float() / 255 - mean) / std)
    assert not Normalizer(mean, std, True, channels_last=False)(x).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_channel_stats_in_chunks_are_the_whole_sets(dtype):
    x = (torch.rand(1000, 3, 4, 4) * 255).to(dtype)
    mean, std = channel_stats(x, chunk_values=100)  # 2 samples per chunk
    values = x.double().transpose(0, 1).reshape(3, -1) / (255 if dtype == torch.uint8 else 1)
    torch.testing.assert_close(mean.flatten().double(), values.mean(dim=1), rtol=1e-6, atol=0)
    torch.testing.assert_close(std.flatten().double(), values.std(dim=1), rtol=1e-6, atol=0)
    assert mean.shape == std.shape == (1, 3, 1, 1) and mean.dtype == torch.float32


def test_reproduce_on_a_machine_with_a_gpu_reruns_a_cpu_run_on_the_cpu(monkeypatch):
    from core.reproduce import reproduce
    from core.runs import tracked_fit

    run = tracked_fit(tiny_config(device="auto", **{"train.deterministic": True, "train.epochs": 2}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # auto would now pick cuda (and bf16)
    result = reproduce(run.run_id)
    torch.use_deterministic_algorithms(False)
    assert result.exact and result.agree
