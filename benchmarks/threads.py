"""Intra-op threads: the default study with auto threads (train.threads=0) against one thread, with and without
one busy background process (a Python loop spinning on one core).

Each figure is the study's wall time with one thread over its time with auto's choice (above 1: auto is faster),
measured side by side in this one run, the same study seed on both sides. `python -m benchmarks.threads [--quick]`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

from benchmarks.study import load, temporary_store
from benchmarks.table import Row, main_for


@contextlib.contextmanager
def busy_process(busy: bool) -> Iterator[None]:
    """One process spinning a Python loop for as long as the block runs (none when `busy` is false)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        yield
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


@contextlib.contextmanager
def no_thread_variables() -> Iterator[None]:
    """OMP_NUM_THREADS and MKL_NUM_THREADS left out, so auto chooses (they override it)."""
    saved = {name: os.environ.pop(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def study_seconds(trials: int, threads: int) -> float:
    """Wall seconds of the default study (its pruner, one worker, in this process) with train.threads=threads."""
    from core.study import run_study

    spec = load(trials, (f"train.threads={threads}",))
    with temporary_store():
        started = time.perf_counter()
        run_study(spec)
        return time.perf_counter() - started


def threads_row(trials: int, repeats: int, busy: bool) -> Row:
    """Auto against one thread, alternated `repeats` times; the medians' ratio."""
    auto, one = [], []
    with no_thread_variables(), busy_process(busy):
        for _ in range(repeats):
            auto.append(study_seconds(trials, 0))
            one.append(study_seconds(trials, 1))
    auto_s, one_s = sorted(auto)[len(auto) // 2], sorted(one)[len(one) // 2]
    ratio = one_s / auto_s
    background = "one busy process" if busy else "no busy process"
    return Row(f"auto threads vs 1, default study ({trials} trials), {background}", ratio, ">= 0.9", ratio >= 0.9,
               f"median of {repeats}: auto {auto_s:.1f} s {[round(s, 1) for s in auto]}, "
               f"1 thread {one_s:.1f} s {[round(s, 1) for s in one]}; load average {os.getloadavg()[0]:.1f} after")


def run(quick: bool = False) -> list[Row]:
    trials, repeats = (6, 1) if quick else (30, 3)
    study_seconds(1, 1)  # the first study of a process pays the imports, the data's loading and the store's schema
    return [threads_row(trials, repeats, busy=False), threads_row(trials, repeats, busy=True)]


if __name__ == "__main__":
    main_for(run)
