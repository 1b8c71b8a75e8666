"""Starting and stopping the Visdom server: bound to 127.0.0.1, env files in visdom/ of the nearest mlruns/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core import servers, signals
from core.errors import UserError
from core.store_dir import make_folder, store_dir

DEFAULT_PORT = 8097


def env_folder() -> Path:
    """Visdom's env files (and this store's server's marker and log): visdom/ in the nearest mlruns/."""
    return store_dir() / "visdom"


def server_command(port: int, host: str, env_path: Path) -> list[str]:
    """Visdom's server behind core.visdom_guarded: foreign hosts and origins refused, bound to `host` only."""
    command = [sys.executable, "-m", "core.visdom_guarded", "-port", str(port), "--hostname", host,
               "-env_path", str(env_path)]
    if host in (servers.LOOPBACK, "localhost"):
        command.append("-bind_local")  # without it Visdom listens on every interface
    return command


def start(port: int = DEFAULT_PORT, host: str = servers.LOOPBACK, env_path: Path | None = None,
          detached: bool = False) -> tuple[subprocess.Popen, str]:
    """Start a server and wait until it answers; returns the process and its URL."""
    env_path = env_path or env_folder()
    servers.check_port(port, host)
    servers.warn_if_exposed(host, "the Visdom server")
    make_folder(env_path)
    log_file = open(env_path / "server.log", "ab")
    # The lowest priority: updating the live view must not take CPU time from training.
    process = subprocess.Popen(server_command(port, host, env_path), stdout=log_file, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=detached, preexec_fn=lambda: os.nice(19),
                               env=_with_core_importable())
    log_file.close()
    url = servers.url_for(host, port)
    if not servers.wait_until_answers(url, timeout=60, process=process):
        process.terminate()
        raise UserError(f"the Visdom server did not start on port {port}; see {env_path / 'server.log'}")
    (env_path / MARKER).write_text(json.dumps({"port": port, "pid": process.pid}))
    return process, url


def _with_core_importable() -> dict[str, str]:
    """The environment, with this checkout first on PYTHONPATH: the server runs `-m core.visdom_guarded` from any
    folder."""
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}


MARKER = "server.json"  # written by the server this store's commands started: its port and process


def ensure_server(port: int = DEFAULT_PORT, env_path: Path | None = None) -> str:
    """The URL of this store's Visdom server on this port, started in the background if none answers.

    A server on the port that another store (another checkout) started is not reused: its env files would
    land elsewhere, so this is one line saying whose it is and what to do.
    """
    env_path = env_path or env_folder()
    url = servers.url_for(servers.LOOPBACK, port)
    if not servers.answers(url):
        start(port, servers.LOOPBACK, env_path, detached=True)  # outlives this command, like a daemon
        return url
    if not _ours(port, env_path):
        raise UserError(f"port {port} has a Visdom server that is not this store's ({_whose(port)}); stop it, "
                        f"or use another port (python -m core visdom --port P, track.visdom_url=...:P), "
                        f"or run without it (--no-visdom)")
    return url


def _ours(port: int, env_path: Path) -> bool:
    try:
        marker = json.loads((env_path / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("port") == port and signals.process_alive(int(marker.get("pid", 0) or 0))


def _whose(port: int) -> str:
    """The listening process and the env folder it serves, as far as this user may see."""
    import psutil

    try:
        pids = {c.pid for c in psutil.net_connections("tcp") if c.laddr and c.laddr.port == port
                and c.status == psutil.CONN_LISTEN and c.pid}
        for pid in pids:
            command = psutil.Process(pid).cmdline()
            folder = command[command.index("-env_path") + 1] if "-env_path" in command else "?"
            return f"process {pid}, env files in {folder}"
    except (psutil.Error, OSError, ValueError):
        pass
    return "its process is not visible to this user"


def stop(env_path: Path | None = None) -> tuple[int, int] | None:
    """End the server this store's commands started (`make run`, `visdom`: its marker), and wait until it no
    longer listens. Returns its (port, process), or None when none of this store's is running."""
    return servers.stop_recorded((env_path or env_folder()) / MARKER, "core.visdom_guarded")
