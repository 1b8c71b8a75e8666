"""A study's workers as one SLURM job array: the batch script, and its submission with `sbatch`.

`sbatch` directly, not submitit: the launcher does not wait on the jobs (a study's results live in its storage),
the script is one an administrator reads (`--dry-run` prints it), and submitit would pickle a function and poll
job states through `sacct`, which clusters without accounting do not answer.

Preemption and time limits: the job asks for SLURM's warning signal (SIGUSR1) WARNING_SECONDS before its end
and is requeueable. The worker finishes its epoch (its checkpoint saved), hands its trial back to be resumed
(failed, its parameters queued again with the run to resume: core.study.trial) and exits 138 (128 + SIGUSR1),
on which the script requeues its own task. A preemption that sends SIGTERM ends the trial the same way at once
(it resumes from the last whole epoch), and SLURM requeues the task itself.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from core.errors import UserError
from core.launch.shared import Workers, environment
from core.signals import WARNING_SIGNAL

WARNING_SECONDS = 120  # SLURM's timer fires up to ~30 s late: room for that and one epoch
WARNED_EXIT = 128 + int(WARNING_SIGNAL)


@dataclass(frozen=True)
class Resources:
    """What each task asks SLURM for; None: the cluster's default."""

    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    partition: str | None = None
    time: str | None = None
    account: str | None = None

    def directives(self) -> list[str]:
        asked = {"gpus-per-task": self.gpus_per_task, "cpus-per-task": self.cpus_per_task, "mem": self.mem,
                 "partition": self.partition, "time": self.time, "account": self.account}
        return [f"#SBATCH --{key}={value}" for key, value in asked.items() if value is not None]


def batch_script(workers: Workers, resources: Resources, python: str, folder: Path) -> str:
    """The job array's script: one task per worker, each its own `core study` process (and GPU, if asked)."""
    step = ["srun", "--unbuffered", "--ntasks=1"]
    if resources.cpus_per_task is not None:  # srun does not take it from sbatch's since SLURM 22.05
        step.append(f"--cpus-per-task={resources.cpus_per_task}")
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={shlex.quote('study-' + workers.name)}",
             f"#SBATCH --array=0-{workers.tasks - 1}",
             "#SBATCH --ntasks=1",
             *resources.directives(),
             f"#SBATCH --signal={WARNING_SIGNAL.name.removeprefix('SIG')}@{WARNING_SECONDS}",
             "#SBATCH --requeue",
             "#SBATCH --open-mode=append",
             f"#SBATCH --chdir={shlex.quote(str(folder))}",
             f"#SBATCH --output={shlex.quote(str(folder / 'slurm-%A_%a.out'))}",
             "",
             f"# One worker of study {workers.name}; each task of the array runs one, sharing the study's storage.",
             "# the storage (read by core study) and where runs go: in the environment, not on command lines",
             *(f"export {name}={shlex.quote(value)}" for name, value in environment(workers).items()),
             " ".join(step) + " " + workers.shell(python),
             "code=$?",
             f"# {WARNED_EXIT}: stopped on SLURM's warning signal (time limit, preemption), its trial queued to resume",
             f'if [ "$code" -eq {WARNED_EXIT} ]; then',
             '  scontrol requeue "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"',
             "fi",
             'exit "$code"', ""]
    return "\n".join(lines)


def sbatch() -> str:
    """Where sbatch is; one line if it is not on PATH (before anything is made)."""
    path = shutil.which("sbatch")
    if path is None:
        raise UserError("sbatch was not found on PATH: launch slurm runs on a machine that submits to SLURM "
                        "(a login node); --dry-run prints the script without it")
    return path


def check(script: str) -> None:
    """`sbatch --test-only`: the cluster's answer (unknown partition, bad time, too many GPUs) before anything is
    made or submitted."""
    _sbatch(["--test-only"], script)


def submit(script: str) -> str:
    """Submit the script; the job id."""
    return _sbatch(["--parsable"], script).split(";")[0].strip()


def _sbatch(options: list[str], script: str) -> str:
    try:
        done = subprocess.run([sbatch(), *options], input=script, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise UserError("sbatch did not answer within 120 s: is slurmctld up? (see sinfo)") from None
    if done.returncode != 0:
        said = " ".join((done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").split())
        raise UserError(f"sbatch refused the job: {said}")
    return done.stdout.strip() or done.stderr.strip()
