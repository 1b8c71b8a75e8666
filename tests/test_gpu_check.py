"""`make gpu-check` (benchmarks/gpu_check.py): its one-line refusal without CUDA, and its dry pass on the CPU."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import gpu_check
from tests.helpers import ROOT, run_python


def test_without_cuda_it_says_so_in_one_line_and_exits_2(tmp_path):
    code = ("import sys, torch; torch.cuda.is_available = lambda: False\n"  # also on a machine with a GPU
            "from benchmarks.gpu_check import main\n"
            f"sys.exit(main(['--report', {str(tmp_path / 'report.md')!r}]))\n")
    result = run_python(code, cwd=ROOT)
    assert result.returncode == 2 and result.stdout == "", result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "needs a CUDA device" in result.stderr
    assert not (tmp_path / "report.md").exists()


def test_every_step_is_in_the_report_and_the_dry_pass_leaves_out_what_needs_the_card():
    names = [name for name, _, _ in gpu_check.STEPS]
    assert len(set(names)) == len(names) == 9
    assert [name for name, _, dry in gpu_check.STEPS if not dry] == [
        "gpu tests (pytest -m gpu)", "torch.compile, two widths", "GPU benchmark rows"]


@pytest.mark.slow
def test_the_dry_pass_on_the_cpu_runs_every_other_step_and_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    report = tmp_path / "gpu-check.md"
    assert gpu_check.main(["--device", "cpu", "--report", str(report)]) == 0
    steps = json.loads(report.with_suffix(".json").read_text())["steps"]
    assert len(steps) == 9 and all(step["ok"] for step in steps), steps
    text = report.read_text()
    assert "bit-identical" in text and "equal to the uninterrupted run's" in text and "left out of the dry pass" in text
