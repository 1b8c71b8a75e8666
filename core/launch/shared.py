"""What the workers of a launched study share: a storage every node reaches, and each worker's command line."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import UserError
from core.study import STORAGE_VARIABLE

# file systems that other machines see too: a journal file there is shared (flock works on NFSv4, Lustre, GPFS)
NETWORK_FILE_SYSTEMS = {"nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "ceph", "fuse.glusterfs",
                        "glusterfs", "fuse.ceph", "panfs", "wekafs", "fuse.sshfs"}
# the environment a worker needs as the launching shell has it: where runs go, heartbeats, outage windows
PASSED_ON = ("MLFLOW_TRACKING_URI", "CORE_HEARTBEAT_SECONDS", "CORE_HEARTBEAT_GRACE_SECONDS",
             "CORE_STORAGE_OUTAGE_SECONDS", "CORE_TRACKING_OUTAGE_SECONDS")


@dataclass(frozen=True)
class Workers:
    """N workers of one study: its spec and overrides (the study's config), storage and budget."""

    spec: str
    overrides: list[str]
    storage: str
    tasks: int
    name: str
    trials: int | None = None
    options: list[str] = field(default_factory=list)  # more of `core study`'s options

    def command(self, python: str) -> list[str]:
        """One worker: `core study` on the study made before, one process, checkpoints on (a stopped trial
        resumes from its last epoch); its storage comes from STORAGE_VARIABLE (environment())."""
        line = [python, "-m", "core", "study", self.spec, *self.overrides, "train.checkpoint=true",
                "--name", self.name, "--workers", "1"]
        return line + (["--trials", str(self.trials)] if self.trials is not None else []) + self.options

    def shell(self, python: str) -> str:
        return " ".join(shlex.quote(part) for part in self.command(python))


def check_shared(url: str) -> None:
    """Refuse, in one line, a storage the nodes cannot share: SQLite (one file, no locking over a network) and a
    journal file on a local disk."""
    if url.startswith("sqlite:"):
        raise UserError(f"--storage {url}: SQLite cannot be shared by the nodes of a cluster; give a database "
                        "server, e.g. postgresql://user@host/db")
    if "://" in url:
        return
    kind = file_system(Path(url).resolve().parent)
    if kind not in NETWORK_FILE_SYSTEMS:
        raise UserError(f"--storage {url}: a journal file on a local disk ({kind}) that other nodes do not see; "
                        "give a database server (postgresql://...) or a file on a shared file system")


def file_system(folder: Path) -> str:
    """The type of the file system `folder` is on (its longest mount point in /proc/mounts); "" if unknown."""
    best, kind = "", ""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    target = str(folder)
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


def passed_on() -> dict[str, str]:
    """The variables of PASSED_ON this shell has: set again in each worker's environment."""
    return {name: os.environ[name] for name in PASSED_ON if os.environ.get(name)}


def environment(workers: Workers) -> dict[str, str]:
    """Each worker's environment: the storage, and what this shell passes on."""
    return {STORAGE_VARIABLE: workers.storage, **passed_on()}
