"""Orphaned workers (issue 34): after a kill -9 of a study's main process its workers end within seconds,
instead of going on training as children of PID 1; their trials are left to the next start's sweep."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.helpers import TINY_CONFIG, start_cli, tiny_study_spec

LONG_TRIALS = {**TINY_CONFIG, "data": {"name": "synthetic", "samples": 3000, "shape": [1, 16, 16], "num_classes": 4},
               "train": {"epochs": 200, "batch_size": 16}}


def workers_of(main: psutil.Process) -> list[psutil.Process]:
    return [child for child in main.children() if "spawn_main" in " ".join(child.cmdline())]


@pytest.mark.slow
def test_workers_end_when_their_main_process_is_killed(tmp_path):
    spec = tiny_study_spec(tmp_path, name="orphans", trials=4, config=LONG_TRIALS)
    process = start_cli("study", str(spec), "--workers", "2", cwd=tmp_path)
    main = psutil.Process(process.pid)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
            workers = workers_of(main)
            time.sleep(0.2)
        assert len(workers) == 2, process.poll()
        time.sleep(3)  # past their start: warmed up and training
        os.kill(process.pid, signal.SIGKILL)
        process.communicate(timeout=30)
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers {[p.pid for p in alive]} outlived their killed parent"
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()
