"""A throwaway PostgreSQL cluster on loopback for tests (as the `postgres` user when the tests run as root).

Started and stopped with pg_ctl; a stop is a fast shutdown that cuts open sessions, as a restart or a crash
of the server does. Skips (or, under CI, fails) where PostgreSQL is not installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import need_service
from tests.helpers import free_port


def as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Cluster:
    """A cluster in its own folder, on a free port of 127.0.0.1."""

    def __init__(self, bin_dir: Path, folder: Path):
        self.bin_dir, self.folder, self.port = bin_dir, folder, free_port()
        self.data = folder / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def run(self, tool: str, *args: str) -> None:
        subprocess.run(as_postgres([str(self.bin_dir / tool), *args]), check=True, capture_output=True, timeout=120)

    def pg_ctl(self, *args: str) -> None:
        self.run("pg_ctl", "-D", str(self.data), "-w", *args)

    def start(self) -> None:
        self.pg_ctl("-l", str(self.folder / "server.log"), "-o",
                    f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F",  # -F: no fsync, a throwaway cluster
                    "start")

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")  # open sessions are cut, as a restart or a crash of the server does

    def running(self) -> bool:
        return subprocess.run(as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "status"]),
                              capture_output=True).returncode == 0


@contextlib.contextmanager
def throwaway_cluster(*databases: str) -> Iterator[Cluster]:
    """A new cluster holding `databases`, started; stopped and removed at the end."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    need_service(bool(binaries), "PostgreSQL is not installed (apt-get install -y postgresql)")
    if os.geteuid() == 0:
        need_service(_has_user("postgres"), "no postgres system user to run the server as")
    folder = Path(tempfile.mkdtemp(prefix="core-pg-"))
    os.chmod(folder, 0o777)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    cluster = Cluster(Path(binaries[-1]).parent, folder)
    try:
        cluster.run("initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust")
        cluster.start()
        for database in databases:
            cluster.run("createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", database)
        yield cluster
    finally:
        if cluster.running():
            cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
