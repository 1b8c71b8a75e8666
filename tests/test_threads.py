"""core.threads: the intra-op threads a fit uses, and the run's tag that records them."""

from __future__ import annotations

import torch

from core import threads
from core.runs import Place, tracked_fit
from core.threads import SMALL_MODEL_FLOPS, Threads, choose
from tests.helpers import mlflow_client, tiny_config

BIG = SMALL_MODEL_FLOPS


def test_auto_takes_the_workers_share_of_the_cores_for_a_model_big_enough():
    assert choose(0, BIG, workers=1, cores=8, environ={}) == Threads(8, "8 cores / 1 workers")
    assert choose(0, BIG, workers=3, cores=8, environ={}).count == 2
    assert choose(0, BIG, workers=4, cores=2, environ={}).count == 1  # never below one


def test_auto_gives_a_small_model_one_thread():
    chosen = choose(0, BIG - 1, workers=1, cores=16, environ={})
    assert chosen.count == 1 and "small model" in chosen.why


def test_the_environment_overrides_auto_and_train_threads_overrides_both():
    assert choose(0, 10, cores=16, environ={"OMP_NUM_THREADS": "3"}) == Threads(3, "OMP_NUM_THREADS")
    assert choose(0, BIG, cores=16, environ={"OMP_NUM_THREADS": " 0"}).count == 16  # not a count: auto
    assert choose(5, 10, cores=2, environ={"OMP_NUM_THREADS": "3"}) == Threads(5, "train.threads")


def test_a_study_worker_takes_its_share(monkeypatch):
    monkeypatch.setattr(threads, "_workers", 1)
    threads.set_workers(2)
    assert choose(0, BIG, cores=8, environ={}).count == 4


def test_the_runs_tag_holds_the_choice(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        auto = tracked_fit(tiny_config(), Place("threads", "auto"))  # an MLP of a few hundred parameters
        explicit = tracked_fit(tiny_config(**{"train.threads": 2}), Place("threads", "explicit"))
    finally:
        torch.set_num_threads(before)
    tags = mlflow_client().get_run(auto.run_id).data.tags
    assert tags["torch_threads"] == "1" and tags["torch_threads_from"].startswith("small model")
    tags = mlflow_client().get_run(explicit.run_id).data.tags
    assert tags["torch_threads"] == "2" and tags["torch_threads_from"] == "train.threads"
