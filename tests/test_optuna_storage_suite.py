"""Optuna's own storage tests, run on ServerStorage (issue 38): the wrapper stays a faithful Optuna storage.

The tests are not copied here: the pinned optuna's source distribution carries tests/storages_tests, fetched
once with pip into a cache folder; tests/optuna_suite_plugin.py puts ServerStorage in place of RDBStorage.
On SQLite files, and on a throwaway PostgreSQL cluster (each SQLite URL the suite names is a database there).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import optuna
import pytest

from tests.conftest import ROOT, need_service
from tests.postgres import throwaway_cluster

pytestmark = pytest.mark.slow
CACHE = Path(os.environ.get("CORE_TEST_CACHE", Path.home() / ".cache" / "core-tests"))


@pytest.fixture(scope="module")
def suite() -> Path:
    """The sdist's root (holding tests/storages_tests), downloaded and unpacked once per machine."""
    root = CACHE / f"optuna-{optuna.__version__}"
    if not (root / "tests" / "storages_tests").is_dir():
        CACHE.mkdir(parents=True, exist_ok=True)
        download = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                                   "--no-binary", ":all:", f"optuna=={optuna.__version__}", "-d", str(CACHE)],
                                  capture_output=True, text=True, timeout=300)
        need_service(download.returncode == 0, f"pip could not fetch optuna's sdist: {download.stderr[-500:]}")
        with tarfile.open(CACHE / f"optuna-{optuna.__version__}.tar.gz") as archive:
            members = [m for m in archive.getmembers() if "/tests/" in m.name]
            archive.extractall(CACHE, members=members, filter="data")
    return root


def run_suite(root: Path, **env: str) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "optuna_suite_plugin", "-p", "no:cacheprovider", "-o", "addopts=",
         "-q", "-W", "ignore", "tests/storages_tests"],
        cwd=root, capture_output=True, text=True, timeout=560,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests"), **env})
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-2000:]
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    return {word: int(count) for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}


def test_optuna_storage_suite_passes_on_server_storage_with_sqlite(suite):
    counts = run_suite(suite)
    assert counts.get("passed", 0) >= 200 and not counts.get("failed"), counts


@pytest.mark.postgres
def test_optuna_storage_suite_passes_on_server_storage_with_postgresql(suite):
    with throwaway_cluster() as cluster:
        counts = run_suite(suite, CORE_SUITE_POSTGRES=cluster.url)
    assert counts.get("passed", 0) >= 150 and not counts.get("failed"), counts
