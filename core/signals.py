"""Stopping cleanly: SIGTERM raised like Ctrl-C, and telling whether a process still lives.

Every command that runs something installs the handlers, so an open run ends
KILLED whether the user pressed Ctrl-C or a scheduler sent SIGTERM.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every open run ends KILLED."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(f"signal {signum}")
        self.signum = signum


def install_signal_handlers() -> None:
    """Turn SIGTERM into `Terminated`, make sure Ctrl-C raises, and note the warning signal (SIGUSR1) for
    `stop_if_warned` at the next safe point (the CLI calls this; library code does not).

    SIGINT is set explicitly because a process started in the background of a
    non-interactive shell inherits it ignored.
    """
    def on_term(signum, frame):
        raise Terminated(signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(WARNING_SIGNAL, lambda signum, frame: _WARNED.set())


WARNING_SIGNAL = signal.SIGUSR1  # a scheduler's warning before a preemption or a time limit (SLURM's --signal)
_WARNED = threading.Event()


def stop_if_warned() -> None:
    """At a point where stopping loses nothing (an epoch saved, between trials): the warning signal, if it came,
    raised as a stop like SIGTERM's, so the open run ends KILLED and a study's trial is queued again to resume."""
    if _WARNED.is_set():
        raise Terminated(WARNING_SIGNAL)


def interrupt_behind(error: BaseException | None) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that `error` is, or was raised while handling; None for a plain error."""
    while error is not None:  # Python keeps __context__ chains free of cycles
        if isinstance(error, KeyboardInterrupt):
            return error
        error = error.__context__
    return None


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal's number, as shells report a process ended by a signal."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def stop_name(interrupt: KeyboardInterrupt) -> str:
    """What stopped the command, as a user reads it: "Ctrl-C (SIGINT)" or the signal's name, e.g. "SIGTERM"."""
    signum = getattr(interrupt, "signum", signal.SIGINT)
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_with_parent() -> None:
    """In a worker process: end (SIGKILL) as soon as the process that started it dies, e.g. by kill -9, instead
    of training on unsupervised as a child of PID 1. Its trial and run stay RUNNING for the dead-worker sweep
    of the next command. The kernel's parent-death signal where there is one (Linux), and everywhere a thread
    waiting on multiprocessing's pipe from the parent, which ends with the parent (and covers a parent that
    died before the signal was asked for)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    threading.Thread(target=_kill_self_after, args=(parent,), name="parent-watch", daemon=True).start()


def _kill_self_after(parent) -> None:
    parent.join()  # returns once the parent's end of the pipe is closed: the parent is gone
    os.kill(os.getpid(), signal.SIGKILL)
