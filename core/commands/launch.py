"""`python -m core launch slurm|k8s SPEC [key=value ...] --tasks N --storage URL`: a study's workers on a
cluster, as a SLURM job array or a Kubernetes Indexed Job."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from pathlib import Path

from core.errors import UserError

HELP = "run a study's workers on a cluster: a SLURM job array (submitted) or a Kubernetes manifest (printed)"
OVERRIDES = "overrides"
EXAMPLES = ["python -m core launch slurm studies/digits_mlp.yaml --tasks 8 --storage postgresql://me@db/studies "
            "--gpus-per-task 1 --time 04:00:00",
            "python -m core launch slurm studies/digits_mlp.yaml --tasks 8 --storage postgresql://me@db/studies "
            "--dry-run",
            "python -m core launch k8s studies/digits_mlp.yaml --tasks 4 --storage postgresql://me@db/studies "
            "--image registry.example/core:latest | kubectl apply -f -"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["slurm", "k8s"], help="slurm: submit a job array; k8s: print a manifest")
    parser.add_argument("spec", metavar="SPEC", help="a study spec (studies/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the spec's base config")
    parser.add_argument("--tasks", type=int, required=True, help="worker tasks (each one process, one GPU if asked)")
    parser.add_argument("--storage", required=True,
                        help="an Optuna storage every node reaches: postgresql://... (or a journal file on a "
                             "shared file system)")
    parser.add_argument("--trials", type=int, help="finish this many trials (default: the spec's budget)")
    parser.add_argument("--name", help="study name (default: the spec's name)")
    slurm = parser.add_argument_group("slurm")
    slurm.add_argument("--gpus-per-task", type=int, metavar="G")
    slurm.add_argument("--cpus-per-task", type=int, metavar="C")
    slurm.add_argument("--mem", metavar="M", help="memory per node, as sbatch takes it (e.g. 16G)")
    slurm.add_argument("--partition", metavar="P")
    slurm.add_argument("--time", metavar="HH:MM:SS", help="each task's time limit (it is requeued at the end)")
    slurm.add_argument("--account", metavar="A")
    slurm.add_argument("--dry-run", action="store_true", help="print the batch script; submit and create nothing")
    parser.add_argument("--image", help="k8s: the container image holding this project")


def main(args: argparse.Namespace) -> int:
    if "=" in args.spec:
        raise UserError("give a study spec first, e.g. python -m core launch slurm studies/digits_mlp.yaml ...")
    if args.tasks < 1:
        raise UserError(f"--tasks={args.tasks}: must be at least 1")
    from core.launch.shared import Workers, check_shared
    from core.study.spec import load_spec  # Optuna loads here, not for --help or a usage error

    spec = load_spec(args.spec, [*args.overrides, "train.checkpoint=true"], name=args.name, trials=args.trials)
    check_shared(args.storage)
    workers = Workers(args.spec, list(args.overrides), args.storage, args.tasks, spec.name, args.trials)
    if args.target == "k8s":
        return _kubernetes(workers, args.image)
    return _slurm(args, workers, spec)


def _kubernetes(workers, image: str | None) -> int:
    if not image:
        raise UserError("launch k8s needs --image: a container image holding this project and its dependencies")
    from core.launch.k8s import manifest

    print(manifest(workers, image), end="")
    return 0


def _slurm(args: argparse.Namespace, workers, spec) -> int:
    from core.launch import slurm

    resources = slurm.Resources(args.gpus_per_task, args.cpus_per_task, args.mem, args.partition, args.time,
                                args.account)
    absolute = dataclasses.replace(workers, spec=str(Path(args.spec).resolve()))  # the nodes' folder may differ
    script = slurm.batch_script(absolute, resources, sys.executable, Path(os.getcwd()))
    if args.dry_run:
        print(script, end="")
        return 0
    slurm.check(script)  # the cluster's answer first: a refused job leaves no study behind
    from core.study.runner import create_for_workers
    from core.study.storage import as_logged

    parent = create_for_workers(spec, args.storage)
    job = slurm.submit(script)
    print(f"submitted job array {job}: {args.tasks} workers of study {spec.name} (parent run {parent})")
    print(f"  watch:   squeue -j {job}    (logs: slurm-{job}_<task>.out here)")
    print(f"  trials:  python -m core dashboard --storage {shlex.quote(as_logged(args.storage))}")
    print("  runs:    python -m core ui")
    print(f"  cancel:  scancel {job}    (the next launch or `core study` on this storage resumes the study)")
    return 0
