"""Errors meant for the person at the keyboard.

Every `UserError` is one line that says what is wrong and what to do; the CLI
prints it to stderr and exits with code 2. Anything else is a bug or a crash.
"""


class UserError(Exception):
    """Bad input from the user: a config, a spec, a path, a URL, an id."""


class ConfigError(UserError):
    """A config key or value is wrong."""


class DataError(UserError):
    """A data set is missing or malformed."""
