"""Visdom: offline assets, the live tracker against a real server, and the server command."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import time

import pytest

from core import visdom_assets, visdom_server
from core.errors import UserError
from core.tracking.visdom_sink import VisdomTracker, make_visdom_tracker
from tests.helpers import free_port


@pytest.fixture
def server(tmp_path):
    port = free_port()
    process, url = visdom_server.start(port, env_path=tmp_path / "visdom")
    yield url
    process.terminate()
    process.wait(10)


def window_steps(url: str, env: str, window: str) -> dict[str, list[float]]:
    from visdom import Visdom

    client = Visdom(server=url.rsplit(":", 1)[0], port=int(url.rsplit(":", 1)[1]), use_incoming_socket=False)
    data = json.loads(client.get_window_data(window, env=env))
    return {trace["name"]: trace["x"] for trace in data["content"]["data"]}


def test_assets_are_in_place_and_a_second_install_does_nothing(tmp_path, monkeypatch):
    static = visdom_assets.static_dir()
    assert visdom_assets.missing_assets(static) == []  # the set-up installed them
    calls = []
    monkeypatch.setattr(visdom_assets, "_unpack", lambda *args: calls.append(args))
    assert visdom_assets.install(static) == [] and calls == []


def test_missing_assets_are_found_and_only_those_fetched(tmp_path, monkeypatch):
    copy = tmp_path / "static"
    shutil.copytree(visdom_assets.static_dir(), copy)
    (copy / "js" / "sjcl.js").unlink()
    (copy / "version.built").write_text("0.0.1")
    assert visdom_assets.missing_assets(copy) == ["js/sjcl.js", "version.built"]
    packed = []

    def fake_unpack(package, folder):  # the npm registry is not asked in this test
        packed.append(package)
        (folder / "package").mkdir(parents=True, exist_ok=True)
        (folder / "package" / "sjcl.js").write_text("// sjcl")
        return folder / "package"

    monkeypatch.setattr(visdom_assets, "_unpack", fake_unpack)
    assert visdom_assets.install(copy) == ["js/sjcl.js", "version.built"]
    assert packed == ["sjcl@1.0.7"] and visdom_assets.missing_assets(copy) == []


def test_points_arrive_in_batches_and_all_of_them(server):
    tracker = make_visdom_tracker("on", server, "env one", "trial-001 lr=0.1")
    for epoch in range(3):
        tracker.log_steps("train_loss_step", [1.0 / (i + 1) for i in range(50)], first_step=50 * epoch)
        tracker.log_metrics({"val_loss": 0.5, "val_acc": 0.9, "ignored": 1.0}, step=epoch)
    tracker.close()
    assert window_steps(server, "env_one", "train_loss_step") == {"trial-001 lr=0.1": list(range(150))}
    assert window_steps(server, "env_one", "val_acc") == {"trial-001 lr=0.1": [0, 1, 2]}
    second = make_visdom_tracker("auto", server, "env one", "trial-002")
    second.log_steps("train_loss_step", [0.3, 0.2], first_step=0)
    second.log_best(2, 0.93)
    second.close()
    assert set(window_steps(server, "env_one", "train_loss_step")) == {"trial-001 lr=0.1", "trial-002"}
    assert window_steps(server, "env_one", "best_value") == {"best": [2]}


def test_auto_without_a_server_is_none_and_quick():
    url = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    assert make_visdom_tracker("auto", url, "env", "label") is None
    assert make_visdom_tracker("off", url, "env", "label") is None
    assert time.monotonic() - start < 2
    with pytest.raises(UserError, match="no Visdom server"):
        make_visdom_tracker("on", url, "env", "label")


class DeadClient:
    def __init__(self):
        self.calls = 0

    def win_exists(self, *args, **kwargs):
        self.calls += 1
        raise ConnectionError("server went away")

    line = win_exists


def test_a_dead_server_costs_one_warning_and_no_exception(caplog):
    client = DeadClient()
    tracker = VisdomTracker(client, "env", "label")
    with caplog.at_level(logging.WARNING):
        for step in range(5):
            tracker.log_steps("train_loss_step", [1.0] * 10, first_step=10 * step)
            time.sleep(0.3)
        tracker.close()
    assert len([r for r in caplog.records if "sending failed" in r.message]) == 1
    assert client.calls == 1 and tracker.dropped == 50


def test_a_full_queue_drops_the_oldest_and_counts(monkeypatch):
    import core.tracking.visdom_sink as sink

    monkeypatch.setattr(sink, "MAX_QUEUED", 10)
    sent = []

    class Recorder:
        def win_exists(self, *args, **kwargs):
            return True

        def line(self, Y, X, **kwargs):
            sent.extend(X.tolist())

    tracker = sink.VisdomTracker(Recorder(), "env", "label")
    tracker.log_steps("train_loss_step", [1.0] * 25, first_step=0)  # arrives faster than it may be sent
    tracker.close()
    assert tracker.dropped == 15 and sent == list(range(15, 25))


def test_server_command_binds_loopback_unless_told():
    command = visdom_server.server_command(8097, "127.0.0.1", visdom_server.env_folder())
    assert "-bind_local" in command and command[command.index("--hostname") + 1] == "127.0.0.1"
    assert "-bind_local" not in visdom_server.server_command(8097, "0.0.0.0", visdom_server.env_folder())


@pytest.mark.slow
@pytest.mark.parametrize("port", ["0", "70000"])
def test_bad_port_is_one_line_and_exit_2(tmp_path, port):
    from tests.helpers import run_cli

    result = run_cli("visdom", "--port", port, cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_two_runs_of_the_same_config_are_two_lines_and_a_constant_rate_has_no_window(server):
    from core.runs import Place, tracked_fit
    from tests.helpers import tiny_config

    config = tiny_config(**{"track.visdom": "on", "track.visdom_url": server, "train.epochs": 2})
    runs = [tracked_fit(config, Place("same label", "run")).run_id for _ in range(2)]
    lines = window_steps(server, "same_label", "val_acc")
    assert len(lines) == 2 and all(steps == [0, 1] for steps in lines.values())  # no diagonal back to epoch 0
    assert sorted(name.rsplit("[", 1)[1].rstrip("]") for name in lines) == sorted(r[:6] for r in runs)
    from visdom import Visdom

    client = Visdom(server=server.rsplit(":", 1)[0], port=int(server.rsplit(":", 1)[1]), use_incoming_socket=False)
    assert not client.win_exists("lr", env="same_label")  # sched.name=none: the rate is flat


def test_a_server_of_another_store_on_the_port_is_named_not_reused(server, tmp_path):
    port = int(server.rsplit(":", 1)[1])
    assert visdom_server.ensure_server(port, env_path=tmp_path / "visdom") == server  # this store's: reused
    with pytest.raises(UserError) as error:
        visdom_server.ensure_server(port, env_path=tmp_path / "another checkout" / "visdom")
    message = str(error.value)
    assert f"port {port}" in message and str(tmp_path / "visdom") in message and "--no-visdom" in message


def test_stop_ends_the_server_make_run_left_and_nothing_listens(tmp_path, capsys):
    from core import servers
    from core.__main__ import main

    port = free_port()
    url = visdom_server.ensure_server(port)  # as `make run` leaves it: detached, in this store's visdom/
    marker = json.loads((visdom_server.env_folder() / visdom_server.MARKER).read_text())
    assert servers.answers(url) and visdom_server.env_folder() == tmp_path / "mlruns" / "visdom"
    assert main(["visdom", "--stop"]) == 0
    assert capsys.readouterr().out == f"stopped the Visdom server on port {port} (process {marker['pid']})\n"
    with pytest.raises(ConnectionRefusedError):  # nothing listens
        socket.create_connection(("127.0.0.1", port), timeout=5)
    assert not signals_alive(marker["pid"])
    assert main(["visdom", "--stop"]) == 0 and "no Visdom server of this store" in capsys.readouterr().out


def signals_alive(pid: int) -> bool:
    import psutil

    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_stop_ends_a_dashboard_left_running_and_its_server_with_it(tmp_path, capsys):
    """`make stop` also ends a `python -m core dashboard` running in another terminal (its record under the store)."""
    import optuna
    import psutil

    from core import servers
    from core.__main__ import main
    from core.study import default_storage
    from core.study.storage import open_storage
    from tests.helpers import start_cli

    optuna.create_study(study_name="s", storage=open_storage(default_storage()))
    port = free_port()
    command = start_cli("dashboard", "--port", str(port), cwd=tmp_path)
    try:
        assert servers.wait_until_answers(f"http://127.0.0.1:{port}/api/studies", timeout=60, process=command)
        record = json.loads(servers.record_file("dashboard").read_text())
        children = psutil.Process(command.pid).children(recursive=True)
        assert record == {"port": port, "pid": command.pid} and children
        assert main(["dashboard", "--stop"]) == 0
        assert capsys.readouterr().out == f"stopped the optuna-dashboard on port {port} (process {command.pid})\n"
        assert command.wait(5) == 0 and not servers.record_file("dashboard").exists()  # a clean stop
        with pytest.raises(ConnectionRefusedError):  # its optuna-dashboard process ended with it
            socket.create_connection(("127.0.0.1", port), timeout=5)
        assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    finally:
        if command.poll() is None:
            command.kill()
    assert main(["ui", "--stop"]) == 0 and "no MLflow UI of this store is running" in capsys.readouterr().out
