"""Small pieces shared by the commands that start local servers (MLflow UI, Visdom)."""

from __future__ import annotations

import logging
import socket
import time
import urllib.request

from core.errors import UserError

LOOPBACK = "127.0.0.1"
log = logging.getLogger(__name__)


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
