"""A worker killed with SIGKILL in the middle of writing the study journal must not block the others.

Found by the kill -9 test in a fresh-clone CI run: with Optuna's default symlink lock the surviving
worker spun at full CPU for ever, and so would every later command on that study.
"""

from __future__ import annotations

import signal
import textwrap

import pytest

from tests.helpers import run_python

DIE_WHILE_WRITING = textwrap.dedent("""
    import os, signal
    import optuna
    from core.study import DEFAULT_STORAGE
    from core.study.storage import open_storage

    storage = open_storage(DEFAULT_STORAGE)
    optuna.create_study(study_name="s", storage=storage)
    storage._backend._lock.acquire()  # the journal's write lock, as a worker holds it while it appends
    os.kill(os.getpid(), signal.SIGKILL)
""")
ASK_A_TRIAL = textwrap.dedent("""
    import optuna
    from core.study import DEFAULT_STORAGE
    from core.study.storage import open_storage

    optuna.load_study(study_name="s", storage=open_storage(DEFAULT_STORAGE)).ask()
    print("asked")
""")


@pytest.mark.slow
def test_worker_killed_while_writing_the_journal_blocks_no_one(tmp_path):
    died = run_python(DIE_WHILE_WRITING, cwd=tmp_path, timeout=120)
    assert died.returncode == -signal.SIGKILL, died.stderr
    asked = run_python(ASK_A_TRIAL, cwd=tmp_path, timeout=60)  # raises TimeoutExpired if the lock outlived its holder
    assert asked.stdout.strip() == "asked", asked.stderr
