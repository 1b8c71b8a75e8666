"""Reproduce runs from their logged config; re-evaluate logged models; refuse what cannot be reproduced."""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import yaml

from core.errors import UserError
from core.reproduce import evaluate_logged_model, reproduce
from core.runs import tracked_fit
from core.runs.logged import logged_run
from core.study import load_spec, run_study
from core.tracking import mlflow_store
from tests.formats import write_mnist
from tests.helpers import TINY_CONFIG, all_runs, load_study, run_cli, tiny_config, tiny_study_spec

# deterministic, with dropout (its random masks must repeat too) and the logged model
TINY = {"data.samples": 300, "model.dropout": 0.2, "train.deterministic": True, "track.log_model": True}


def train(**extra) -> str:
    return tracked_fit(tiny_config(**TINY, **extra)).run_id


def test_train_then_reproduce_is_bit_identical_on_cpu():
    original = train()
    result = reproduce(original)
    assert result.exact and result.agree and result.first_divergence is None
    assert len(result.rows) == 3 * 4 and all(old == new for _, _, old, new in result.rows)
    new_run = mlflow_store.client().get_run(result.run_id)
    assert new_run.data.tags["reproduced_from"] == original and new_run.data.params == \
        mlflow_store.client().get_run(original).data.params


def test_params_hold_the_keys_that_apply_and_reproduce_rebuilds_the_whole_config():
    # Adam ignores optim.momentum and a holdout split has no split.k: they are not params, yet the config is whole.
    config = tiny_config(**TINY, **{"optim.name": "adam", "optim.lr": 0.01, "optim.momentum": 0.5, "split.k": 3})
    original = tracked_fit(config).run_id
    params = mlflow_store.client().get_run(original).data.params
    assert not {"optim.momentum", "split.k", "split.fold"} & set(params) and params["optim.name"] == "adam"
    _, rebuilt = logged_run(original)
    assert rebuilt == config and rebuilt.optim.momentum == 0.5 and rebuilt.split.k == 3
    result = reproduce(original)
    assert result.exact and result.agree
    assert mlflow_store.client().get_run(result.run_id).data.params == params


def test_a_run_of_an_older_version_still_reproduces_and_evaluates(monkeypatch):
    # Older versions logged every key as a param and the metrics without the epoch/, step/ and summary/
    # prefixes; the oldest had no config.yaml.
    import core.runs.record

    with monkeypatch.context() as old:
        old.setattr(core.runs.record, "summary_key", lambda name: name)
        old.setattr(core.runs.record, "CurveKeys", lambda record: record)
        old.setattr(core.runs.record, "run_params", lambda config, place: config.to_flat())
        original = train(**{"optim.momentum": 0.5})
    run = mlflow_store.client().get_run(original)
    assert {"test_acc", "val_acc", "train_loss_step"} <= set(run.data.metrics) and "summary/test_acc" not in \
        run.data.metrics
    Path(urlparse(run.info.artifact_uri).path, "config.yaml").unlink()
    assert logged_run(original)[1] == tiny_config(**TINY, **{"optim.momentum": 0.5})
    logged, now = evaluate_logged_model(original)
    assert now == pytest.approx(logged, abs=1e-6) and not math.isnan(logged["test_acc"])
    assert reproduce(original).agree


def test_a_run_logged_with_the_retired_cpu_linear_key_still_reproduces():
    original = train()
    client = mlflow_store.client()
    # as logged by versions that had the key
    client.log_text(original, yaml.safe_dump({**tiny_config(**TINY).to_flat(), "train.cpu_linear": "onednn"}),
                    "config.yaml")
    client.set_tag(original, "cpu_linear", "onednn")
    result = reproduce(original)
    assert result.agree  # MKL both times here; a oneDNN original would differ in the last bits, and says so:
    assert any("oneDNN" in warning for warning in result.warnings)


def test_a_study_trial_is_reproduced_with_its_derived_seed(tmp_path):
    config = {**TINY_CONFIG, "train": {"epochs": 2, "batch_size": 32, "deterministic": True}}
    run_study(load_spec(tiny_study_spec(tmp_path, name="repro", trials=2, config=config)))
    trial = load_study("repro").trials[1]
    result = reproduce(trial.user_attrs["mlflow_run_id"])
    assert result.agree
    new_run = mlflow_store.client().get_run(result.run_id)
    assert new_run.data.tags["trial_number"] == "1" and new_run.data.params["seed"] == str(trial.user_attrs["seed"])


def test_a_changed_result_is_named_by_epoch():
    original = train()
    client = mlflow_store.client()
    client.log_metric(original, "epoch/val_loss", 123.0, step=1)  # as if the original had diverged at epoch 1
    assert reproduce(original).first_divergence == 1


def test_an_early_stopped_run_is_compared_on_the_epochs_it_trained():
    original = train(**{"train.epochs": 30, "optim.lr": 0.5, "early_stop.patience": 1})
    result = reproduce(original)
    epochs = {epoch for epoch, _, _, _ in result.rows}
    assert result.agree and result.exact and max(epochs) < 29  # stopped early, and the same way again


def test_evaluate_matches_the_logged_test_metrics():
    run_id = train()
    logged, now = evaluate_logged_model(run_id)
    assert now == pytest.approx(logged, abs=1e-6)



@pytest.mark.slow
def test_a_changed_data_file_is_refused_unless_allowed(tmp_path):
    generator = np.random.default_rng(0)
    images, labels = generator.integers(0, 256, (60, 28, 28), dtype=np.uint8), generator.integers(0, 10, 60)
    write_mnist(tmp_path / "data", images, labels, images[:20], labels[:20])
    run_id = train(**{"data.name": "mnist", "data.root": str(tmp_path / "data"), "model.hidden": [8]})
    images[0, 0, 0] ^= 1
    write_mnist(tmp_path / "data", images, labels, images[:20], labels[:20])
    before = len(all_runs())
    refused = run_cli("reproduce", run_id)
    problems = [line for line in refused.stderr.splitlines() if not line.startswith("INFO ")]  # the cache's note
    assert refused.returncode == 2 and len(problems) == 1
    fingerprint = mlflow_store.client().get_run(run_id).data.tags["data_fingerprint"]
    assert fingerprint in refused.stderr and "fingerprint" in refused.stderr
    assert len(all_runs()) == before
    allowed = run_cli("reproduce", run_id, "--allow-data-change")
    assert allowed.returncode in (0, 1) and len(all_runs()) == before + 1


@pytest.mark.slow
def test_bad_run_ids(tmp_path):
    real = train()
    client = mlflow_store.client()
    foreign = client.create_run(client.get_run(real).info.experiment_id).info.run_id  # not made by this tool
    deleted = train()
    client.delete_run(deleted)
    before = len(all_runs())
    for run_id, words in ((("0" * 32), "no run"), (foreign, "not made by this tool"), (deleted, "deleted")):
        with pytest.raises(UserError, match=words):
            reproduce(run_id)
        result = run_cli("reproduce", run_id)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert len(all_runs()) == before
    missing_store = f"sqlite:///{tmp_path}/elsewhere/mlflow.db"
    result = run_cli("reproduce", real, MLFLOW_TRACKING_URI=missing_store)
    assert result.returncode == 2 and "no MLflow store" in result.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_store_that_fails_to_answer_is_not_called_a_missing_run(monkeypatch):
    from mlflow.exceptions import MlflowException

    real = train()

    def broken(run_id):
        raise MlflowException("connection reset by peer", error_code="INTERNAL_ERROR")

    monkeypatch.setattr(mlflow_store.client(), "get_run", broken)
    with pytest.raises(UserError) as error:
        reproduce(real)
    assert "cannot be read" in str(error.value) and "connection reset" in str(error.value)
    assert "no run" not in str(error.value)


def test_the_cli_prints_first_last_and_differing_epochs_and_keeps_every_epoch_as_an_artifact(tmp_path):
    original = train(**{"train.epochs": 5})
    mlflow_store.client().log_metric(original, "epoch/val_acc", 0.5, step=2)  # one epoch disagrees
    result = run_cli("reproduce", original, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["0", "2", "4"] and "<- differs" in lines[2]
    assert lines[4].startswith("DIFFER") and "reproduction.csv" in lines[5] and len(lines) == 6
    new_run = lines[4].rsplit(" ", 1)[1]
    table = mlflow_store.client().download_artifacts(new_run, "reproduction.csv", str(tmp_path))
    assert len(open(table).read().splitlines()) == 1 + 5 * 4


def test_a_failed_run_is_compared_only_on_the_epochs_it_logged(monkeypatch):
    import core.train

    real_epoch, calls = core.train.train_one_epoch, []

    def dies_in_the_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the machine went away")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(core.train, "train_one_epoch", dies_in_the_third_epoch)
    with pytest.raises(RuntimeError):
        train()
    monkeypatch.setattr(core.train, "train_one_epoch", real_epoch)
    [failed] = [r for r in all_runs() if r.info.status == "FAILED"]
    result = reproduce(failed.info.run_id)
    assert result.agree, result.rows
    assert {epoch for epoch, _, _, _ in result.rows} == {0, 1}
    assert any("FAILED" in warning and "only those 2" in warning for warning in result.warnings)
