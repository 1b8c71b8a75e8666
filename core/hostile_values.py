"""Values that type checks let through but that would do harm later: refused in one ConfigError line.

A name with control characters (newlines, carriage returns, ANSI escapes) would be written raw into the
progress bar and the terminal, where it can rewrite what the user sees; a float beyond float32's range
overflows inside the optimizer (a traceback and a FAILED run instead of an answer). Torch-free, as config is.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from core.errors import ConfigError

NAME_KEYS = ("track.experiment", "track.run_name")  # the config's names that are shown in terminals
FLOAT32_MAX = 3.4028234663852886e38
USER_SECTIONS = ("model.args.", "data.args.")  # the user's own code's arguments: its business


def check_printable(key: str, name: str) -> None:
    """Control characters (Unicode category Cc) in a name are refused, shown escaped."""
    bad = [char for char in name if unicodedata.category(char) == "Cc"]
    if bad:
        shown = ascii(name)[:80]
        raise ConfigError(f"{key} {shown} holds control characters ({ascii(''.join(dict.fromkeys(bad)))}); "
                          f"names are shown in terminals: give one without them")


def check_config_values(flat: dict[str, Any]) -> None:
    """A config's names printable and its floats within float32 (what the model trains in)."""
    for key in NAME_KEYS:
        check_printable(key, str(flat.get(key, "")))
    for key, value in flat.items():
        if isinstance(value, float) and abs(value) > FLOAT32_MAX and not key.startswith(USER_SECTIONS):
            raise ConfigError(f"{key}={value:g} is beyond float32's range (at most {FLOAT32_MAX:.4g}), "
                              f"which training computes in; give a smaller value")
