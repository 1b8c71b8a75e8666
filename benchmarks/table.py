"""One row per figure, printed as a table and saved as Markdown and JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    name: str
    ratio: float
    goal: str
    ok: bool
    detail: str = ""
    memory: str = ""  # memory measured, where a row has it: a column of its own, blank for the other rows


def machine() -> str:
    import torch

    from core.provenance import cpuinfo

    # the CPU's name: the ratios against the notes' loop depend on it
    name = cpuinfo("model name")
    cpu = f"{name} ({platform.machine()})" if name else platform.processor() or platform.machine()
    device = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{platform.system()} {cpu}, {os.cpu_count()} cores{device}, torch {torch.__version__}"


def markdown(rows: list[Row], title: str) -> str:
    memory = any(row.memory for row in rows)  # the column only in a table with such a row
    lines = [f"### {title}", "", f"Machine: {machine()}", "",
             "| figure | ratio | goal | met | measured |" + (" memory |" if memory else ""),
             "|---|---|---|---|---|" + ("---|" if memory else "")]
    for row in rows:
        lines.append(f"| {row.name} | {row.ratio:.2f} | {row.goal} | {'yes' if row.ok else 'NO'} | {row.detail} |"
                     + (f" {row.memory} |" if memory else ""))
    return "\n".join(lines)


def save(rows: list[Row], title: str, stem: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(markdown(rows, title) + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps({"title": title, "machine": machine(),
                                                      "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
    return RESULTS / f"{stem}.md"


def main_for(run: Callable[[bool], list[Row]]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(markdown(run(args.quick), "benchmark"))
