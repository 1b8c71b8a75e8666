"""A study's workers on Kubernetes, in the pattern of Optuna's own example (optuna-examples/kubernetes): a Job
that creates the study, an Indexed Job of N workers (restartPolicy OnFailure), the storage URL from a Secret.

Each worker pod first runs the same creation (an init container): idempotent under the study's lock
(study.runner.create_for_workers), so workers that start before the creating Job ends find the study made
once, never a second parent run.
"""

from __future__ import annotations

import copy
import re

import yaml

from core.launch.shared import Workers, passed_on
from core.study import STORAGE_VARIABLE


def manifest(workers: Workers, image: str) -> str:
    """Secret, creating Job and workers' Indexed Job as one YAML stream (`kubectl apply -f -`)."""
    name = dns_name(workers.name)
    secret = f"{name}-storage"
    env = [{"name": STORAGE_VARIABLE, "valueFrom": {"secretKeyRef": {"name": secret, "key": "url"}}},
           *({"name": key, "value": value} for key, value in passed_on().items())]
    create = container("create-study", image, [*workers.command("python"), "--create-only"], env)
    work = container("worker", image, workers.command("python"), env)
    objects = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret}, "type": "Opaque",
         "stringData": {"url": workers.storage}},
        job(f"{name}-create", {"restartPolicy": "OnFailure", "containers": [create]}, {"backoffLimit": 3}),
        job(f"{name}-workers", {"restartPolicy": "OnFailure", "initContainers": [create], "containers": [work]},
            {"completionMode": "Indexed", "completions": workers.tasks, "parallelism": workers.tasks,
             "backoffLimit": 4 * workers.tasks}),
    ]
    return yaml.safe_dump_all(objects, sort_keys=False)


def job(name: str, pod: dict, spec: dict) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"metadata": {"labels": {"app": name}}, "spec": pod}}}


def container(name: str, image: str, command: list[str], env: list[dict]) -> dict:
    return {"name": name, "image": image, "command": command, "env": copy.deepcopy(env)}  # no YAML anchors


def dns_name(study: str) -> str:
    """A study name as a Kubernetes object name (lower case letters, digits and '-', at most 50 characters,
    leaving room for the suffixes)."""
    name = re.sub(r"[^a-z0-9-]+", "-", study.lower()).strip("-")[:50].strip("-")
    return name or "study"
