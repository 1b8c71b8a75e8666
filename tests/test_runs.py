"""core.runs: where runs open and end, and what they leave behind on the way out."""

from __future__ import annotations

import threading

import pytest

from core.errors import OutageError, UserError
from core.runs import Place, open_run, tracked_fit
from core.runs.run import active
from tests.helpers import all_runs, free_port, mlflow_client, tiny_config


def test_a_required_live_view_that_is_not_there_starts_no_thread():
    config = tiny_config(**{"track.visdom": "on", "track.visdom_url": f"http://127.0.0.1:{free_port()}"})
    tracked_fit(tiny_config(), Place("warm", "warm"))  # the store's own threads (if any) exist before counting
    before = {thread.ident for thread in threading.enumerate()}
    with pytest.raises(UserError, match="track.visdom=on"):
        tracked_fit(config, Place("leak", "run"))
    left = [thread.name for thread in threading.enumerate() if thread.ident not in before and thread.is_alive()]
    assert not left  # the MLflow sender was started before Visdom's check raised, outside its closing


def test_a_run_ends_with_its_state_tag_and_status():
    with open_run(Place("states", "pruned one")) as run:
        run.conclude("pruned")
    with pytest.raises(ZeroDivisionError), open_run(Place("states", "broken")) as broken:
        raise ZeroDivisionError("a bug in the block")
    with pytest.raises(KeyboardInterrupt), open_run(Place("states", "stopped")) as stopped:
        raise KeyboardInterrupt
    ended = {run.info.run_id: (run.info.status, run.data.tags.get("state")) for run in all_runs("states")}
    assert ended == {run.id: ("FINISHED", "pruned"), broken.id: ("FAILED", "failed"),
                     stopped.id: ("KILLED", "killed")}


def test_a_resumed_parent_is_reopened_and_an_outage_is_not_taken_for_a_missing_run(monkeypatch):
    with open_run(Place("parent", "study")) as first:
        pass
    with open_run(Place("parent", "study", reopen=first.id)) as again:
        pass
    with open_run(Place("parent", "study", reopen="0" * 32)) as new:  # gone: a new parent
        pass
    assert again.id == first.id and new.id != first.id and not active("0" * 32)
    client = mlflow_client()

    def store_down(run_id):
        raise OutageError("tracking store did not answer")

    with monkeypatch.context() as down, pytest.raises(OutageError):
        down.setattr(type(client), "get_run", lambda self, run_id: store_down(run_id))
        with open_run(Place("parent", "study", reopen=first.id)):
            pass  # a store that did not answer is not "no such run": no second parent run is made
    assert len(all_runs("parent")) == 2


def test_a_reopened_run_forgets_how_it_ended_before():
    with pytest.raises(ZeroDivisionError), open_run(Place("again", "broken")) as broken:
        raise ZeroDivisionError("killed, as the stale-run sweep would say")
    with open_run(Place("again", "broken", reopen=broken.id)):
        pass
    [run] = all_runs("again")
    assert run.info.status == "FINISHED" and not {"state", "error", "traceback"} & set(run.data.tags)


def test_a_finished_fit_reads_back_as_it_was_trained():
    from core.runs.logged import finished_children, logged_fit

    with open_run(Place("read back", "group")) as group:
        tracked = tracked_fit(tiny_config(), group.child("fold 0", {}))
    logged = logged_fit(tracked.run_id)  # what a resumed comparison reads instead of training the fold again
    result = tracked.result
    assert (logged.history, logged.metrics, logged.stop) == (result.history, result.metrics, result.stop)
    assert finished_children("read back", group.id) == {"fold 0": tracked.run_id}
