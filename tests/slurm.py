"""A throwaway one-node SLURM cluster on 127.0.0.1 for tests (as root: SlurmUser=root), its state in a
temporary folder. Skips (or, under CI, fails) where SLURM is not installed or the tests do not run as root.

Stopped in the order that leaves nothing behind: jobs cancelled and gone from squeue first (slurmstepd outlives
a killed slurmd), then slurmd, slurmctld and munged (if this fixture started it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import need_service

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "scontrol", "squeue")
CONFIG = """ClusterName=coretest
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
MinJobAge=300
KillWait=10
InactiveLimit=0
MailProg=/bin/true
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


class Slurm:
    def __init__(self, folder: Path):
        self.folder, self.config = folder, folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.config)}
        self.munged_pid: int | None = None

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(command), env=self.env, capture_output=True, text=True, timeout=60, check=check)

    def squeue(self, *args: str) -> list[str]:
        return self.run("squeue", "-h", *args).stdout.split()

    def wait(self, what, seconds: float, step: float = 0.5) -> None:
        deadline = time.monotonic() + seconds
        while not what():
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {seconds} s: {what}")
            time.sleep(step)


def _installed() -> bool:
    return all(shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists() for tool in DAEMONS)


def _start_munge(slurm: Slurm) -> None:
    if subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
        return  # one is running already (this machine's): use it
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        subprocess.run(["mungekey", "--create", "--force"], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True, timeout=30)
    slurm.munged_pid = int(Path("/run/munge/munged.pid").read_text())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def throwaway_slurm(cpus: int = 2) -> Iterator[Slurm]:
    """A started one-node cluster with `cpus` CPUs; SLURM_CONF points at it for the caller's commands."""
    need_service(_installed(), "SLURM is not installed (apt-get install -y --no-install-recommends slurmctld "
                               "slurmd slurm-client munge)")
    need_service(os.geteuid() == 0, "the SLURM fixture runs its daemons as root")
    folder = Path(tempfile.mkdtemp(prefix="core-slurm-"))
    for part in ("state", "spool"):
        (folder / part).mkdir()
    slurm = Slurm(folder)
    slurm.config.write_text(CONFIG.format(host=socket.gethostname().split(".")[0], folder=folder, cpus=cpus,
                                          ctld_port=_free_port(), d_port=_free_port()))
    try:
        _start_munge(slurm)
        slurm.run("slurmctld", "-i")
        slurm.run("slurmd")
        slurm.wait(lambda: slurm.run("sinfo", "-h", "-o", "%t", check=False).stdout.strip() == "idle", 60)
        yield slurm
    finally:
        _stop(slurm)
        shutil.rmtree(folder, ignore_errors=True)


def _stop(slurm: Slurm) -> None:
    with contextlib.suppress(Exception):
        slurm.run("scancel", "--user=root", "--full", check=False)
        slurm.wait(lambda: not slurm.squeue(), 60)
    pids = [int(path.read_text()) for path in (slurm.folder / "slurmd.pid", slurm.folder / "slurmctld.pid")
            if path.exists()] + ([slurm.munged_pid] if slurm.munged_pid else [])
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie of ours is dead too
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return state != "Z"
    return True
