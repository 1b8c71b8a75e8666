"""Facts that make a run reproducible: code version, package versions, device."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from core.config import Config

PACKAGES = ("torch", "torchvision", "numpy", "scikit-learn", "mlflow", "optuna")
ROOT = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the code, with `+dirty` when it has uncommitted changes; "unknown" outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


@functools.cache
def cpuinfo(field: str) -> str:
    """The first value of `field` in /proc/cpuinfo (e.g. "vendor_id", "model name"); "" off Linux or if absent."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip() == field:
            return value.strip()
    return ""


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.machine()}"


def run_tags(config: Config, fingerprint: str, device: torch.device) -> dict[str, str]:
    tags = {"git_commit": git_commit(), "device": device_name(device), "seed": str(config.seed),
            "data_fingerprint": fingerprint, "data_name": config.data.name, "made_by": "core"}
    tags["torch_threads"] = str(torch.get_num_threads())  # CPU reductions sum in an order that depends on it
    if "CUDA_VISIBLE_DEVICES" in os.environ:  # e.g. the GPU a study worker was given
        tags["cuda_visible_devices"] = os.environ["CUDA_VISIBLE_DEVICES"]
    tags.update({f"version.{name}": version for name, version in package_versions().items()})
    return tags
