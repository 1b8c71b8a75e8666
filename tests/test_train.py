"""The trainer, checkpoints, and one tracked run through the CLI."""

from __future__ import annotations

import math

import pytest
import torch

from core import checkpoint, names
from core.config import Config
from core.errors import UserError
from core.runs.logged import logged_config
from core.tracking.base import NullTracker
from core.train import Normalizer, evaluate, fit, make_optimizer, prepare, shift_images
from tests.helpers import all_runs, mlflow_client, run_cli, tiny_config, tiny_overrides

# 300 samples, with figures and the logged model (the tiny default leaves both out)
TINY = {"data.samples": 300, "track.figures": True, "track.log_model": True}


def tiny(**extra) -> Config:
    return tiny_config(**TINY, **extra)


def test_fit_learns():
    result = fit(tiny())
    assert result.metrics["final_val_acc"] > 0.6 and result.stop.reason == "completed"
    assert len(result.history) == 3 and result.steps == 3 * math.ceil(192 / 32)


def test_same_seed_twice_is_identical_in_deterministic_mode():
    try:
        first = fit(tiny(**{"train.deterministic": True, "model.dropout": 0.2, "train.augment": "none"}))
        second = fit(tiny(**{"train.deterministic": True, "model.dropout": 0.2, "train.augment": "none"}))
    finally:
        torch.use_deterministic_algorithms(False)  # a global flag: later tests must not inherit it
    assert [h | {"epoch_seconds": 0} for h in first.history] == [h | {"epoch_seconds": 0} for h in second.history]


@pytest.mark.parametrize("stored", [torch.arange(12, dtype=torch.uint8).view(3, 4),
                                    torch.linspace(-1, 1, 12).view(3, 4)])
def test_normalizing_a_batch_leaves_the_stored_data_alone(stored):
    before = stored.clone()
    normalize = Normalizer(torch.tensor([0.5]), torch.tensor([2.0]), is_image=stored.dtype == torch.uint8,
                           channels_last=False)
    out = normalize(stored[1:])  # evaluate() normalises slices: views of the stored tensor
    assert torch.equal(stored, before)
    expected = (before[1:] / 255 - 0.5) / 2 if stored.dtype == torch.uint8 else (before[1:] - 0.5) / 2
    torch.testing.assert_close(out, expected)


class WeightsEachEpoch(NullTracker):
    """Keeps a copy of the model's weights as each epoch is logged (before any restore)."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.weights = model, []

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.weights.append({name: tensor.clone() for name, tensor in self.model.state_dict().items()})


def same_weights(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(first[name], second[name]) for name in first)


def test_early_stopping_through_fit_stops_and_restores():
    prepared = prepare(tiny(**{"train.epochs": 30, "optim.lr": 0.5, "early_stop.patience": 2}))
    epochs = WeightsEachEpoch(prepared.model)
    result = fit(prepared, epochs)
    assert result.stop.reason == "early_stopping" and len(result.history) < 30
    assert len(result.history) == result.best_epoch + 3
    best = result.history[result.best_epoch]
    assert result.metrics["final_val_loss"] == best["val_loss"]
    # The returned model is the best epoch's, not the last one's: its weights, and its validation loss again.
    assert len(epochs.weights) == len(result.history)
    assert not same_weights(epochs.weights[-1], epochs.weights[result.best_epoch])
    assert same_weights(result.model.state_dict(), epochs.weights[result.best_epoch])
    again = evaluate(result.model, prepared.part(prepared.val_idx), prepared.normalize, prepared.task)
    assert again["loss"] == pytest.approx(best["val_loss"], rel=1e-6, abs=1e-9) and again["acc"] == best["val_acc"]


@pytest.mark.parametrize("name", names.OPTIMIZERS)
def test_make_optimizer_builds_each_declared_optimizer_with_the_keys_it_takes(name):
    config = tiny(**{"optim.name": name, "optim.momentum": 0.5, "optim.lr": 0.2})
    optimizer = make_optimizer(torch.nn.Linear(2, 2), config, torch.device("cpu"))
    assert type(optimizer) is getattr(torch.optim, names.OPTIMIZERS[name].torch_class)
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.2 and all(group[key] == config.get(f"optim.{key}") for key in names.OPTIMIZERS[name].keys)


def test_should_stop_prunes():
    result = fit(tiny(**{"train.epochs": 5}), should_stop=lambda epoch, metrics: "told to" if epoch == 1 else "")
    assert result.stop.reason == "pruned" and len(result.history) == 2


def test_non_finite_loss_stops_at_once_with_epoch_and_step():
    result = fit(tiny(**{"optim.lr": 1e30, "train.epochs": 5, "track.flush_every": 1}))
    assert result.stop.reason == "non_finite"
    assert "epoch 0" in result.stop.detail and "step" in result.stop.detail
    assert result.steps < 6  # it did not train on


def test_shift_augmentation_moves_pixels_within_bounds():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 3, 3] = 1.0
    shifted = shift_images(x, 2, torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(shifted[:, 0], as_tuple=True)[1:]
    assert shifted.shape == x.shape and shifted.sum() == 64
    assert rows.min() >= 1 and rows.max() <= 5 and len(set(rows.tolist())) > 1
    digits = tiny(**{"data.name": "digits", "train.augment": "shift", "train.shift": 1, "train.epochs": 8,
                     "model.hidden": [64]})
    assert fit(digits).metrics["final_val_acc"] > 0.8


def test_checkpoints_are_atomic_and_loaded_safely(tmp_path):
    config = tiny()
    path = tmp_path / "ckpt" / "last.pt"
    result = fit(config, checkpoint_path=path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary file left
    state = checkpoint.load(path)
    assert state["epoch"] == 2 and Config.from_flat(state["config"]) == config
    assert all(torch.equal(state["model"][k], v) for k, v in result.model.state_dict().items())
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="corrupted"):
        checkpoint.load(path)


@pytest.mark.slow
def test_train_command_records_one_complete_run(tmp_path):
    result = run_cli("train", *tiny_overrides(**TINY), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = all_runs("train")
    client = mlflow_client()
    assert run.info.status == "FINISHED"
    # Params: the keys that apply (SGD's momentum, a holdout split's fraction; no split.k); config.yaml: all of it.
    assert run.data.params == {k: str(v) for k, v in tiny().to_params().items()}
    assert {"optim.momentum", "split.val_fraction"} <= set(run.data.params)
    assert not {"split.k", "split.fold", "sched.gamma", "train.shift"} & set(run.data.params)
    assert Config.from_flat(logged_config(run)) == tiny()
    for tag in ("git_commit", "data_fingerprint", "device", "seed", "version.torch", "version.mlflow"):
        assert run.data.tags[tag]
    steps = client.get_metric_history(run.info.run_id, "step/train_loss")
    assert [m.step for m in steps] == list(range(len(steps))) and len(steps) == 3 * 6
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_acc")] == [0, 1, 2]
    # Every key has a prefix, and epoch/ < step/ < summary/: MLflow's chart view shows the curves first.
    assert {key.split("/")[0] for key in run.data.metrics} == {"epoch", "step", "summary"}
    assert "summary/test_acc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "learning_curves.png", "confusion_matrix.png", "weights"} <= artifacts
    assert run.outputs.model_outputs
    assert run.inputs.dataset_inputs[0].dataset.digest == run.data.tags["data_fingerprint"]
    (model,) = client.search_logged_models([run.info.experiment_id]).to_list()
    # The Models tab ranks models by the run's summary, not by the first epoch's values.
    assert {m.key: m.value for m in model.metrics} == {k: v for k, v in run.data.metrics.items()
                                                        if k.startswith(("summary/final_", "summary/test_"))}
    assert run.info.run_name.startswith("mlp-synthetic")


def test_a_fixed_split_seed_gives_runs_of_other_seeds_the_same_validation_part():
    from core.train import prepare

    val = {seed: prepare(tiny(seed=seed, **{"split.seed": 0})).val_idx.tolist() for seed in (1, 2)}
    own = {seed: prepare(tiny(seed=seed)).val_idx.tolist() for seed in (1, 2)}  # -1: the run's seed, as before
    assert val[1] == val[2] == prepare(tiny(seed=0)).val_idx.tolist() and own[1] != own[2]
