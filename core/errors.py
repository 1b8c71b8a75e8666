"""Errors meant for the person at the keyboard.

Every `UserError` is one line that says what is wrong and what to do; the CLI
prints it to stderr and exits with code 2. An `OutageError` (a store, server or disk
that failed under us for longer than we wait) is one line too, with exit code 3, so
scripts can tell "fix your input" from "try again later". Anything else is a bug or a crash.
"""


from collections.abc import Callable


class UserError(Exception):
    """Bad input from the user: a config, a spec, a path, a URL, an id."""


class ConfigError(UserError):
    """A config key or value is wrong."""


class DataError(UserError):
    """A data set is missing or malformed."""


class OutageError(Exception):
    """A service or resource failed under a correct command: a tracking server or database that stayed
    down past the retry window, a full disk. Open runs are closed before it reaches the CLI."""

    window_variable = ""  # for a server that stayed down: the environment variable of its window (core/backoff.py)


def cause_where(error: BaseException | None, test: Callable[[BaseException], bool],
                stop: Callable[[BaseException], bool] | None = None) -> BaseException | None:
    """`error`, or the first error behind it (what it was raised from, or what was being handled when it was
    raised), for which `test` holds; None if none. The walk ends early at an error for which `stop` holds."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen and not (stop is not None and stop(error)):
        if test(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
