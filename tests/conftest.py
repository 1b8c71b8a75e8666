"""Shared fixtures: temporary stores, tiny configs, and services that may be missing.

Tests that need Chromium or PostgreSQL skip with a reason on a machine without
them, but fail when CORE_REQUIRE_SERVICES=1 (set by .ci/run), so CI never passes
by skipping.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ARTIFACTS = ROOT / "test-artifacts"  # screenshots and logs kept from browser tests


def need_service(available: bool, reason: str) -> None:
    """Skip (or, under CI, fail) a test whose outside service is missing."""
    if available:
        return
    if os.environ.get("CORE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    need_service(Path(path).exists(), "Chromium is not installed (apt-get install -y chromium)")
    return path


@pytest.fixture
def artifacts_dir(request) -> Path:
    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch) -> Path:
    """Every test runs in its own folder with its own tracking store, never the user's mlruns/."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    return store
