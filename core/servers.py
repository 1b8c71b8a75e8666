"""Small pieces shared by the commands that start local servers (MLflow UI, Visdom, optuna-dashboard)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from core.errors import UserError
from core.store_dir import make_folder, store_dir

LOOPBACK = "127.0.0.1"
log = logging.getLogger(__name__)


def add_address_arguments(parser, default_port: int) -> None:
    """--port and --host of a command that starts a server (an argparse parser); bound to loopback by default."""
    parser.add_argument("--port", type=int, default=default_port, help=f"port (default {default_port})")
    parser.add_argument("--host", default=LOOPBACK, help=f"address to bind (default {LOOPBACK})")


def add_stop_argument(parser, what: str) -> None:
    parser.add_argument("--stop", action="store_true",
                        help=f"stop the {what} this store's command started (in another terminal, the background)")


def print_stopped(stopped: tuple[int, int] | None, what: str) -> int:
    """The CLI's line for `--stop`; exit code 0 either way (nothing running is no error: make stop runs them all)."""
    if stopped is None:
        print(f"no {what} of this store is running (store: {store_dir()})")
    else:
        print(f"stopped the {what} on port {stopped[0]} (process {stopped[1]})")
    return 0


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


def record_file(name: str) -> Path:
    """Where a foreground server of this store (ui, dashboard) records its process while it runs."""
    return store_dir() / "servers" / f"{name}.json"


@contextlib.contextmanager
def recorded(name: str, port: int) -> Iterator[None]:
    """While inside: this process (the command serving in the foreground) and its port in record_file(name), so
    that `--stop` (make stop) can end a server left running in another terminal or the background."""
    path = record_file(name)
    make_folder(path.parent)
    path.write_text(json.dumps({"port": port, "pid": os.getpid()}))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def stop_recorded(path: Path, command_part: str, timeout: float = 15) -> tuple[int, int] | None:
    """End the process a record names (SIGTERM, then SIGKILL after `timeout`) and wait until its port no longer
    answers; (port, pid), or None when none runs. A process whose command line lacks `command_part` (its id was
    reused since) is left alone."""
    import psutil

    try:
        record = json.loads(path.read_text())
        port, pid = int(record["port"]), int(record["pid"])
        process = psutil.Process(pid)
        if command_part not in " ".join(process.cmdline()):
            raise psutil.NoSuchProcess(pid)
        process.send_signal(signal.SIGTERM)  # Terminated in our commands: their own server ends with them
        try:
            process.wait(timeout)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    except (OSError, ValueError, KeyError, TypeError, psutil.NoSuchProcess):
        path.unlink(missing_ok=True)
        return None
    path.unlink(missing_ok=True)
    deadline = time.monotonic() + timeout
    while answers(url_for(LOOPBACK, port)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return port, pid
