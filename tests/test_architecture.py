"""The layering ARCHITECTURE.md describes, checked from the source: one owner of a run, small functions."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"
MAX_LINES, MAX_PARAMETERS = 50, 6


def modules(folder: Path = CORE):
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(folder.rglob("*.py"))]


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
    return names


def test_study_and_compare_leave_the_store_to_the_runs_package():
    forbidden = {"core.tracking.mlflow_store", "core.tracking.mlflow_sink", "core.tracking.mlflow_sink.MLflowTracker",
                 "mlflow", "mlflow.entities"}
    offenders = {path.name: sorted(imported(tree) & forbidden)
                 for path, tree in modules(CORE / "study") + [m for m in modules() if m[0].name == "compare.py"]}
    assert not {name: found for name, found in offenders.items() if found}


def test_one_function_opens_runs():
    """MLflow's create_run is called in core/runs/run.py alone (open_run's _start)."""
    callers = [path.relative_to(CORE).as_posix() for path, tree in modules() for node in ast.walk(tree)
               if isinstance(node, ast.Attribute) and node.attr in ("create_run", "start_run")]
    assert callers == ["runs/run.py"]


def test_functions_are_short_and_take_few_parameters():
    too_long, too_many = [], []
    for path, tree in modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{path.relative_to(CORE)}:{node.name}"
                if node.end_lineno - node.lineno + 1 > MAX_LINES:
                    too_long.append(where)
                arguments = node.args
                count = len(arguments.posonlyargs + arguments.args + arguments.kwonlyargs)
                count -= bool(arguments.args) and arguments.args[0].arg in ("self", "cls")
                if count > MAX_PARAMETERS:
                    too_many.append(where)
    assert not too_long and not too_many, (too_long, too_many)
