"""Starting the Visdom server: bound to 127.0.0.1, env files under mlruns/visdom/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core import servers
from core.errors import UserError

DEFAULT_PORT = 8097
ENV_PATH = Path("mlruns") / "visdom"


def server_command(port: int, host: str, env_path: Path) -> list[str]:
    command = [sys.executable, "-m", "visdom.server", "-port", str(port), "--hostname", host,
               "-env_path", str(env_path)]
    if host in (servers.LOOPBACK, "localhost"):
        command.append("-bind_local")  # without it Visdom listens on every interface
    return command


def url_for(host: str, port: int) -> str:
    return f"http://{servers.LOOPBACK if host in ('0.0.0.0', '::') else host}:{port}"


def start(port: int = DEFAULT_PORT, host: str = servers.LOOPBACK, env_path: Path = ENV_PATH,
          detached: bool = False) -> tuple[subprocess.Popen, str]:
    """Start a server and wait until it answers; returns the process and its URL."""
    servers.check_port(port, host)
    servers.warn_if_exposed(host, "the Visdom server")
    env_path.mkdir(parents=True, exist_ok=True)
    log_file = open(env_path / "server.log", "ab")
    # The lowest priority: updating the live view must not take CPU time from training.
    process = subprocess.Popen(server_command(port, host, env_path), stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=detached, preexec_fn=lambda: os.nice(19))
    log_file.close()
    url = url_for(host, port)
    if not servers.wait_until_answers(url, timeout=60, process=process):
        process.terminate()
        raise UserError(f"the Visdom server did not start on port {port}; see {env_path / 'server.log'}")
    return process, url


def ensure_server(port: int = DEFAULT_PORT, env_path: Path = ENV_PATH) -> str:
    """The URL of a Visdom server on this port, started in the background if none answers."""
    url = url_for(servers.LOOPBACK, port)
    if servers.answers(url):
        return url
    start(port, servers.LOOPBACK, env_path, detached=True)  # outlives this command, like a daemon
    return url
