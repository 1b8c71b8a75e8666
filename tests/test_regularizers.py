"""Each remedy does what it says."""

from __future__ import annotations

import torch
from torch import nn

from core.regularizers import EarlyStopping, L1Penalty, parameter_groups


def test_l1_is_lambda_times_abs_weights_not_biases():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2), nn.Linear(2, 1))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(-2.0)
    weights = 3 * 2 + 2 * 1
    assert L1Penalty(model, 0.5)().item() == 0.5 * 2.0 * weights


def train_linear(l1: float) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(40, 20)
    y = x[:, :3].sum(dim=1, keepdim=True) + 0.5 * torch.randn(40, 1)  # only 3 of 20 inputs matter
    model = nn.Linear(20, 1)
    penalty = L1Penalty(model, l1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(300):
        loss = nn.functional.mse_loss(model(x), y) + penalty()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.weight.detach().abs().flatten()


def test_l1_drives_useless_weights_toward_zero():
    plain, sparse = train_linear(0.0), train_linear(0.1)
    assert sparse[3:].mean() < plain[3:].mean() / 3  # the 17 useless weights shrink
    assert sparse[:3].min() > 0.5  # the 3 useful ones stay


def test_weight_decay_groups_leave_biases_and_norms_alone():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    decay, rest = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and rest["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[3].weight)}
    assert len(rest["params"]) == 4  # two biases, the norm's scale and shift


def test_dropout_respects_train_and_eval():
    layer = nn.Dropout(0.5)
    x = torch.ones(1000)
    assert (layer.train()(x) == 0).sum() > 300
    assert torch.equal(layer.eval()(x), x)


def test_early_stopping_stops_at_the_right_epoch_and_restores_the_best():
    model = nn.Linear(1, 1)
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    stops = []
    for epoch, value in enumerate([1.0, 0.5, 0.495, 0.6, 0.7, 0.1]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stops.append(stopper.step(value, epoch, model))
        if stops[-1]:
            break
    assert stops == [False, False, False, True]  # 0.495 is within min_delta: no improvement
    assert stopper.best_epoch == 1
    stopper.restore(model)
    assert model.weight.item() == 1.0


def test_early_stopping_without_patience_tracks_the_best_epoch_but_copies_no_weights():
    model = nn.Linear(1, 1)
    stopper = EarlyStopping(patience=0)
    assert [stopper.step(value, epoch, model) for epoch, value in enumerate([1.0, 0.5, 0.7])] == [False] * 3
    assert stopper.best_epoch == 1 and stopper.best_state is None
