"""A comparison's report page (core/page.py writes it): the table, the statistics and the figures the comparison
logged on its parent run (compare._log_parent: its note and PNG figures), read back, so the comparison's end and
`python -m core report NAME` make the same page."""

from __future__ import annotations

from pathlib import Path

from core import page
from core.page import Figure, Text
from core.runs import Run
from core.runs.logged import artifact_bytes, artifact_paths
from core.runs.run import NOTE_TAG

REPORT_FOLDER = "report"  # the pages, as artifacts of the parent run
FIGURES = {"curves.png": "Learning curves", "fold_scores.png": "Scores per fold"}  # then each sweep's strength_*


def write_comparison_report(name: str, parent_run_id: str) -> Path:
    """The comparison's page, written to mlruns/reports/<name>.html and .md and logged on its parent run; its
    path."""
    parent = Run.of(parent_run_id, name)
    blocks: list[Text | Figure] = [Text(parent.tags().get(NOTE_TAG, f"## Comparison `{name}`"))]
    logged = artifact_paths(parent_run_id)
    strengths = sorted(path for path in logged if path.startswith("strength_") and path.endswith(".png"))
    for path in [path for path in FIGURES if path in logged] + strengths:
        png = artifact_bytes(parent_run_id, path)
        if png is not None:
            title = FIGURES.get(path) or f"Sweep: {path.removeprefix('strength_').removesuffix('.png')}"
            blocks.append(Figure(title, png=png))
    html_path, md_path = page.write(name, f"Comparison {name}", blocks)
    for path in (html_path, md_path):
        parent.log_artifact(path, REPORT_FOLDER)
    return html_path
