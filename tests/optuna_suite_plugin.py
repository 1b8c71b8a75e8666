"""A pytest plugin that runs Optuna's own storage tests (tests/storages_tests of its sdist) on ServerStorage.

Loaded with `-p optuna_suite_plugin` by tests/test_optuna_storage_suite.py, in a pytest of its own run in
Optuna's source tree. Every RDBStorage the suite makes is our ServerStorage (the class is swapped where Optuna
and the tests look it up), so the wrapper is held to what Optuna asks of a storage. With
CORE_SUITE_POSTGRES=postgresql://user@host:port each SQLite URL the suite names is a fresh database of that
server instead. Only the RDB storages are ours: the in-memory, journal and gRPC variants are deselected, and
the optional fakeredis import of optuna.testing.storages is stubbed where it is not installed.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import types
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))  # core, after Optuna's own `tests` package

if importlib.util.find_spec("fakeredis") is None:  # imported at the top of optuna.testing.storages
    sys.modules["fakeredis"] = types.SimpleNamespace(FakeStrictRedis=None)

import optuna  # noqa: E402
import sqlalchemy  # noqa: E402
from optuna.storages._rdb import storage as rdb_module  # noqa: E402

from core.study.storage import ServerStorage  # noqa: E402

NOT_RDB = ("inmemory", "journal", "grpc")  # storage modes that are not an RDBStorage
# fails on plain RDBStorage too here: SQLAlchemy 2.1 reaches PostgreSQL through psycopg 3, not the psycopg2 it hides
NOT_HERE = ("test_init_db_module_import_error",)
# on PostgreSQL: these open Optuna's old SQLite files (upgrades) or test SQLite's URL and session handling
SQLITE_ONLY = ("test_upgrade_", "test_init_url_template", "test_create_scoped_session")
SERVER = os.environ.get("CORE_SUITE_POSTGRES", "")
_databases: dict[str, str] = {}  # SQLite URL the suite named -> the PostgreSQL database that stands for it
_numbers = itertools.count()


def _on_server(url: str) -> str:
    """A new database for each SQLite URL (the suite expects an empty storage behind a new file)."""
    if url not in _databases or url.endswith(":memory:"):  # an in-memory SQLite is new on every open
        name = f"suite{next(_numbers)}"
        engine = sqlalchemy.create_engine(f"{SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        engine.dispose()
        _databases[url] = f"{SERVER}/{name}"
    return _databases[url]


class SuiteStorage(ServerStorage):
    """ServerStorage, on the PostgreSQL server when one is given (SQLite's connect_args dropped there)."""

    def __init__(self, url: str, engine_kwargs: dict | None = None, *args, **kwargs):
        if SERVER and url.startswith("sqlite:"):
            url = _on_server(url)
            engine_kwargs = {key: value for key, value in (engine_kwargs or {}).items() if key != "connect_args"}
        super().__init__(url, engine_kwargs, *args, **kwargs)


optuna.storages.RDBStorage = SuiteStorage  # what the suite and optuna.storages.get_storage construct
rdb_module.RDBStorage = SuiteStorage  # and where the suite's patch() targets name it
if SERVER:
    os.environ.setdefault("TEST_DB_URL", _on_server("server-tests"))  # test_with_server.py runs too


def pytest_collection_modifyitems(config, items) -> None:
    keep, drop = [], []
    for item in items:
        mode = getattr(getattr(item, "callspec", None), "id", "")  # storage_mode or the `storage` fixture's mode
        path = str(item.path)
        off = any(word in mode for word in NOT_RDB) or "journal_tests" in path or path.endswith("test_grpc.py") \
            or item.name in NOT_HERE or (SERVER and item.name.startswith(SQLITE_ONLY))
        (drop if off else keep).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_report_header(config) -> str:
    where = SERVER or "SQLite files"
    return f"optuna storage suite: RDBStorage is core.study.storage.ServerStorage, on {where}"


@pytest.fixture(autouse=True)
def _server_storage_check(request):
    """Fail loudly if the swap did not hold (a test would then prove nothing about ServerStorage)."""
    assert optuna.storages.RDBStorage is SuiteStorage
    yield
