"""A researcher's own code, named by import path (`module:attribute`, as uvicorn and gunicorn do).

`experiments.my_net:build` imports `experiments.my_net` (from the working
folder, or anything on PYTHONPATH) and takes its `build`. Every problem is one
UserError line: a module that does not import (with its own file and line), a
missing attribute, something that cannot be called.

The source files a reference brought in (the module and the user modules it
imported, not installed packages and not `core`) are remembered, so a run can
keep them as artifacts with their SHA-256, and `reproduce` can refuse a run
whose code has changed since.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import subprocess
import sys
import sysconfig
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError

PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
CORE = Path(__file__).resolve().parent


def is_reference(name: str) -> bool:
    """Whether `name` is an import path like `package.module:attribute` (checked without importing)."""
    return bool(PATTERN.match(name))


@dataclass(frozen=True)
class SourceFile:
    relative: str  # the path below the folder the module was imported from, e.g. experiments/my_net.py
    path: Path
    sha256: str


def load(reference: str, key: str) -> Callable[..., Any]:
    """The callable `reference` names; `key` (e.g. model.name) says in errors where it came from."""
    module_name, _, attribute = reference.partition(":")
    module = _import(module_name, key)
    if not hasattr(module, attribute):
        raise UserError(f"{key}={reference}: module {module_name} ({module.__file__}) has no attribute {attribute!r}")
    target = getattr(module, attribute)
    if not callable(target):
        raise UserError(f"{key}={reference}: {attribute} is a {type(target).__name__}, not a function")
    return target


# For each user module we imported: the modules its first import brought in (itself included).
_BROUGHT_IN: dict[str, tuple[str, ...]] = {}


def _import(module_name: str, key: str):
    before = set(sys.modules)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and (error.name == module_name or module_name.startswith(error.name + ".")):
            raise UserError(f"{key}: no module named {error.name!r} (run from the folder that holds it, "
                            f"or add that folder to PYTHONPATH)") from None
        raise UserError(f"{key}: importing {module_name} failed: {_where(error)}") from None
    except SyntaxError as error:
        raise UserError(f"{key}: {error.filename}, line {error.lineno}: SyntaxError: {error.msg}") from None
    except Exception as error:
        raise UserError(f"{key}: importing {module_name} failed: {_where(error)}") from None
    if module_name not in _BROUGHT_IN:
        new = set(sys.modules) - before
        if not new:  # imported before we were asked (e.g. by the user's own script): its package is all we know
            top = module_name.split(".")[0]
            new = {name for name in sys.modules if name == top or name.startswith(top + ".")}
        _BROUGHT_IN[module_name] = tuple(sorted(new | {module_name}))
    return module


def _where(error: BaseException) -> str:
    """`file, line N: Type: message` of the innermost frame of the user's code."""
    frames = traceback.extract_tb(error.__traceback__)
    user = [f for f in frames if not f.filename.startswith(str(CORE)) and "importlib" not in f.filename]
    place = f"{user[-1].filename}, line {user[-1].lineno}: " if user else ""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{place}{type(error).__name__}{': ' + message if message else ''}"[:500]


def sources(references: list[str]) -> list[SourceFile]:
    """The source files the references' modules brought in: user modules only, sorted, each once."""
    files: dict[str, SourceFile] = {}
    for reference in references:
        module_name = reference.partition(":")[0]
        _import(module_name, reference)
        for name in _BROUGHT_IN[module_name]:
            module = sys.modules.get(name)
            path = _user_file(module)
            if path is not None:
                relative = _relative(name, path)
                files[relative] = SourceFile(relative, path, _sha256(path))
    return [files[key] for key in sorted(files)]


def _user_file(module) -> Path | None:
    """The module's source file when it is the user's (not the standard library, an installed package or core)."""
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    path = Path(file).resolve()
    installed = {Path(sysconfig.get_path(kind)).resolve() for kind in ("stdlib", "platstdlib", "purelib", "platlib")}
    if path.is_relative_to(CORE) or any(path.is_relative_to(folder) for folder in installed):
        return None
    return path


def _relative(name: str, path: Path) -> str:
    """`experiments/my_net.py` for module experiments.my_net: the path below the folder it was imported from."""
    depth = name.count(".") + (1 if path.name == "__init__.py" else 0)
    return path.relative_to(path.parents[depth]).as_posix()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_commit(folder: Path) -> str:
    """The commit of the repository holding `folder`, with `+dirty` for uncommitted changes; "" outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "."], cwd=folder,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return commit + ("+dirty" if dirty else "")
