"""The CUDA path (marker `gpu`; `make test` leaves these out, and they skip without a CUDA device)."""

from __future__ import annotations

import warnings

import pytest
import torch

from core.config import Config
from core.tracking.base import NullTracker
from core.train import LossWatch, epoch_state, fit, prepare, train_one_epoch

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
    # a conv of more than one input channel: a weight of one input channel is channels_last either way
    conv = next(m for m in run.model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not conv.weight.is_contiguous()
    result = fit(run)
    assert result.metrics["final_val_acc"] > 0.5


def test_no_host_sync_per_step():
    from core.train import make_optimizer

    config = gpu_config(**{"track.flush_every": 10_000, "train.batch_size": 32})
    run = prepare(config)
    optimizer = make_optimizer(run.model, config, run.device)
    assert optimizer.defaults.get("fused")
    state = epoch_state(run, optimizer, LossWatch(NullTracker()))
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


RESUMABLE = {"data.samples": 600, "train.epochs": 4, "train.deterministic": True, "model.dropout": 0.2,
             "train.augment": "shift", "train.shift": 1, "optim.name": "adam"}


@pytest.fixture
def deterministic():
    yield
    torch.use_deterministic_algorithms(False)  # a global flag: later tests must not inherit it


def without_time(history):
    return [h | {"epoch_seconds": 0} for h in history]


def test_a_deterministic_fit_after_an_earlier_cuda_matmul_runs_and_repeats():
    code = ("import core, torch\n"
            "a = torch.ones(64, 64, device='cuda'); (a @ a).sum().item()  # cuBLAS starts here\n"
            "from tests.test_gpu import gpu_config, without_time\n"
            "from core.train import fit\n"
            "runs = [fit(gpu_config(**{'train.deterministic': True})) for _ in range(2)]\n"
            "assert without_time(runs[0].history) == without_time(runs[1].history)\n")
    from tests.helpers import run_python

    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_alexnet_trains_deterministically_at_96(deterministic):
    config = {"data.shape": [3, 96, 96], "data.samples": 400, "model.name": "alexnet_cifar",
              "model.channels": [16, 32, 32, 32, 32], "model.hidden": [64], "train.epochs": 1,
              "train.deterministic": True, "train.batch_size": 100}
    first, second = fit(gpu_config(**config)), fit(gpu_config(**config))
    assert without_time(first.history) == without_time(second.history)


def test_checkpoint_and_resume_on_cuda_bit_for_bit(tmp_path, deterministic):
    from core import checkpoint

    whole = fit(gpu_config(**RESUMABLE))
    path = tmp_path / "last.pt"

    class Preempted(Exception):
        pass

    def stop_at_2(epoch, metrics):
        if epoch == 2:
            raise Preempted  # as a kill after epoch 1's checkpoint
        return ""
    with pytest.raises(Preempted):
        fit(gpu_config(**RESUMABLE), should_stop=stop_at_2, checkpoint_path=path)
    saved = checkpoint.load(path)
    assert saved["rng"]["device"] == "cuda" and saved["rng"]["generator"].numel() == 16
    resumed = fit(gpu_config(**RESUMABLE), resume_from=saved)
    assert without_time(resumed.history) == without_time(whole.history)
    assert all(torch.equal(a, b) for a, b in zip(whole.model.state_dict().values(),
                                                  resumed.model.state_dict().values()))


def test_compile_across_two_widths_recompiles_little():
    for width in (16, 32):
        result = fit(gpu_config(**{"train.compile": True, "model.name": "mlp", "model.hidden": [width]}))
        assert result.extra["compile_seconds"] > 0 and result.extra["compiled_graphs"] <= 6, result.extra


def test_the_study_parent_checks_its_base_on_the_cpu_and_starts_no_cuda():
    from tests.helpers import run_python

    code = ("import types, torch\n"
            "from core.study import runner\n"
            "from tests.test_gpu import gpu_config\n"
            "runner.check_base(types.SimpleNamespace(base=gpu_config(device='auto')), workers=2)\n"
            "assert not torch.cuda.is_initialized()\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_the_normalizer_gives_channels_last_for_images_of_three_channels():
    run = prepare(gpu_config(**{"data.shape": [3, 16, 16]}))
    batch = run.normalize(run.data.train_x[:8])
    assert batch.is_cuda and batch.is_contiguous(memory_format=torch.channels_last)


def test_gpus_are_checked_against_the_devices_this_machine_has():
    from core.device import worker_gpus
    from core.errors import UserError

    count = torch.cuda.device_count()
    assert len(worker_gpus(None)) == count and worker_gpus(["0"]) == worker_gpus(None)[:1]
    with pytest.raises(UserError, match=f"GPU {count} is not there"):
        worker_gpus([str(count)])


def test_predictions_agree_with_test_acc():
    """Issue 37 item 9: evaluate and predict both run in float32 (autocast trains only), as the served model."""
    from core.train import predict

    result = fit(gpu_config(**{"train.epochs": 1}))
    run = prepare(gpu_config(**{"train.epochs": 1}))
    predicted = predict(result.model, run.test, run.normalize, run.task).argmax(dim=1)
    accuracy = (predicted == run.data.test_y).float().mean().item()
    assert accuracy == result.metrics["test_acc"]
