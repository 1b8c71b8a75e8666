"""A signal that cuts an MLflow query short must not break the writes that end the run KILLED."""

from __future__ import annotations

import signal
import threading

import pytest
import sqlalchemy.orm.loading

from core.signals import Terminated
from core.tracking import mlflow_store
from tests.helpers import end_run, start_run


def test_run_ends_killed_after_a_query_cut_short(monkeypatch):
    client = mlflow_store.client()
    run_id = start_run("interrupted", "run")

    def signal_lands_here(*args, **kwargs):  # where SIGTERM landed in a CI run: MLflow reading rows
        raise Terminated()

    with monkeypatch.context() as patch:
        patch.setattr(sqlalchemy.orm.loading, "_instance_processor", signal_lands_here)
        with pytest.raises(Terminated) as interrupt:  # kept, as it is while the clean-up runs
            client.get_run(run_id)
    # The background sender writes meanwhile, so the cut-short query's snapshot is stale.
    sender = threading.Thread(target=client.set_tag, args=(run_id, "sent", "yes"))
    sender.start()
    sender.join()

    end_run(run_id, "KILLED")
    client.set_tag(run_id, "state", "killed")
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.tags["state"] == "killed"
    assert interrupt.value.signum == signal.SIGTERM
    assert run.data.tags["sent"] == "yes"
