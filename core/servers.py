"""Small pieces shared by the commands that start local servers (MLflow UI, Visdom, optuna-dashboard)."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable

from core.errors import UserError

LOOPBACK = "127.0.0.1"
log = logging.getLogger(__name__)


def add_address_arguments(parser, default_port: int) -> None:
    """--port and --host of a command that starts a server (an argparse parser); bound to loopback by default."""
    parser.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port})")
    parser.add_argument("--host", default=LOOPBACK, help=f"address to bind (default {LOOPBACK})")


def check_port(port: int, host: str = LOOPBACK) -> None:
    """A usable port that nothing listens on yet; else one UserError line."""
    if not 1 <= port <= 65535:
        raise UserError(f"port {port} is not valid: use 1..65535")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"port {port} on {host} is not free ({error.strerror}); pick another with --port") from None


def warn_if_exposed(host: str, what: str) -> None:
    """Binding beyond loopback is the user's explicit choice, and they are told what it exposes."""
    if host not in (LOOPBACK, "localhost", "::1"):
        log.warning("%s listens on %s: anyone who can reach this machine can read (and change) it", what, host)


def answers(url: str, timeout: float = 0.5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except Exception:
        return False


def wait_until_answers(url: str, timeout: float, process=None) -> bool:
    """Poll `url` until it answers; False on timeout or when `process` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(url):
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def url_for(host: str, port: int) -> str:
    """Where a server bound to `host` answers from this machine (loopback for the any-address binds)."""
    return f"http://{LOOPBACK if host in ('0.0.0.0', '::') else host}:{port}"


def serve(command: list[str], base: str, health_path: str, what: str, on_ready: Callable[[], None],
          env: dict[str, str] | None = None) -> None:
    """Run a server in the foreground (the MLflow UI, optuna-dashboard) until Ctrl-C or SIGTERM: start it,
    wait until `base + health_path` answers, call `on_ready` (the command prints where it is), then wait.
    A server that does not start, or a stop before it is ready, ends it too: none is left orphaned."""
    process = subprocess.Popen(command, env=env)
    try:
        if not wait_until_answers(base + health_path, timeout=60, process=process):
            raise UserError(f"{what} did not start on {base} (see its messages above)")
        on_ready()
    except BaseException:
        process.terminate()
        process.wait(30)
        raise
    run_until_interrupted(process)


def run_until_interrupted(process) -> None:
    """Wait for a server started in the foreground; Ctrl-C (or SIGTERM) stops it."""
    try:
        process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
