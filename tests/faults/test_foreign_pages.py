"""Foreign pages (issue 34): the dashboard and Visdom servers we start answer only requests meant for this
machine. A foreign Host (DNS rebinding) gets 403 and a write from a foreign origin (a cross-site form, a page's
fetch) gets 403; the study or window it aimed at is untouched. Visdom listens on exactly the address given."""

from __future__ import annotations

import json
import signal
import socket
import urllib.error
import urllib.request

import pytest

from core import host_guard, servers, visdom_server
from tests.helpers import free_port, start_cli

FOREIGN_HOST = "attacker.example"
FOREIGN_ORIGIN = "http://attacker.example"


def send(url: str, method: str = "GET", data: bytes | None = None, **headers: str) -> int:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_refusal_names_foreign_hosts_and_cross_origin_writes():
    local = host_guard.allowed_hosts("127.0.0.1")
    assert not host_guard.refusal("DELETE", "127.0.0.1:8080", None, None, local)  # curl, the Python clients
    assert not host_guard.refusal("POST", "localhost:8080", "http://localhost:8080", None, local)  # its own page
    assert not host_guard.refusal("GET", "[::1]:8080", None, None, local)
    assert host_guard.refusal("GET", f"{FOREIGN_HOST}:8080", None, None, local)  # DNS rebinding
    assert host_guard.refusal("POST", "127.0.0.1:8080", FOREIGN_ORIGIN, None, local)  # a cross-site form
    assert host_guard.refusal("POST", "127.0.0.1:8080", "null", None, local)  # a sandboxed page
    assert host_guard.refusal("GET", "127.0.0.1:8080", FOREIGN_ORIGIN, "websocket", local)
    assert not host_guard.refusal("GET", "127.0.0.1:8080", FOREIGN_ORIGIN, None, local)  # the browser hides the answer
    assert socket.gethostname().lower() in host_guard.allowed_hosts("0.0.0.0")  # how other machines reach it


@pytest.mark.slow
def test_dashboard_refuses_a_foreign_host_and_origin_and_the_study_survives(tmp_path):
    import optuna

    from core.study.storage import open_storage

    journal = tmp_path / "optuna.journal"
    optuna.create_study(study_name="kept", storage=open_storage(str(journal)))
    port = free_port()
    process = start_cli("dashboard", "--port", str(port), "--storage", str(journal), cwd=tmp_path)
    try:
        base = f"http://127.0.0.1:{port}"
        assert servers.wait_until_answers(base + "/api/studies", timeout=60, process=process), process.poll()
        assert send(base + "/api/studies/0", "DELETE", Host=f"{FOREIGN_HOST}:{port}") == 403
        assert send(base + "/api/studies/0", "DELETE", Origin=FOREIGN_ORIGIN) == 403
        assert send(base + "/api/studies", Host=f"{FOREIGN_HOST}:{port}") == 403
        assert send(base + "/api/studies") == 200  # this machine's own requests are served
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(str(journal)))] == ["kept"]


@pytest.mark.slow
def test_visdom_refuses_foreign_writes_and_binds_only_the_address_given(tmp_path):
    import psutil

    port = free_port()
    process, url = visdom_server.start(port, "0.0.0.0", tmp_path / "visdom")
    try:
        def window(name: str, **headers: str) -> int:
            body = {"data": [{"x": [1], "y": [1], "type": "scatter"}], "win": name, "eid": "main", "layout": {},
                    "opts": {}}
            return send(url + "/events", "POST", json.dumps(body).encode(), **headers)

        assert window("rebound", Host=f"{FOREIGN_HOST}:{port}") == 403
        assert window("cross_site", Origin=FOREIGN_ORIGIN) == 403
        assert send(url + "/", Host=f"{FOREIGN_HOST}:{port}") == 403
        assert send(url + "/", Host=f"{socket.gethostname()}:{port}") == 200
        assert window("own") == 200  # a wildcard bind: this machine's name
        # nothing was made: Visdom's own client finds neither window
        from visdom import Visdom

        client = Visdom(server="http://127.0.0.1", port=port, use_incoming_socket=False)
        assert client.win_exists("own", env="main")
        assert not client.win_exists("rebound", env="main") and not client.win_exists("cross_site", env="main")
        listening = {c.laddr.ip for c in psutil.Process(process.pid).net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN}
        assert listening == {"0.0.0.0"}  # not also IPv6's [::], which Visdom's own bind adds
    finally:
        process.terminate()
        process.wait(10)
