"""The MLflow UI on a tiny study, in headless Chromium: runs, params and a metric chart are shown."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from core.study import load_spec, run_study
from tests.browser import browser_page, outside_loopback
from tests.helpers import cli_env, free_port, tiny_study_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture
def study_in_ui(tmp_path):
    outcome = run_study(load_spec(tiny_study_spec(tmp_path, name="ui study", trials=3)))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "core", "ui", "--port", str(port)], cwd=tmp_path, env=cli_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = None
        for line in server.stdout:
            if line.startswith("MLflow UI:"):
                url = line.split(": ", 1)[1].strip()
                break
        assert url and "workflowType=machine_learning" in url, "the ui command printed no URL"
        yield outcome, url
    finally:
        server.terminate()
        server.wait(30)


def test_runs_params_and_charts_are_shown(study_in_ui, chromium_path, artifacts_dir):
    outcome, url = study_in_ui
    base, experiment = url.split("/#/")[0], re.search(r"experiments/(\d+)", url).group(1)
    from tests.helpers import all_runs

    runs = all_runs("ui study")
    trial = next(r for r in runs if r.info.run_id == outcome.best_run_id)
    parent = next(r for r in runs if r.info.run_id == outcome.parent_run_id)
    with browser_page(chromium_path) as (page, requests):
        page.goto(url)
        # Trials are nested under the study's parent run: expand it, as a user would.
        parent_cell = page.locator('[role="gridcell"]', has_text=parent.info.run_name).first
        parent_cell.wait_for(timeout=90_000)
        parent_cell.locator("button").first.click()
        page.get_by_text(trial.info.run_name).first.wait_for(timeout=60_000)
        for run in runs:
            assert page.get_by_text(run.info.run_name).count() >= 1, run.info.run_name
        page.screenshot(path=str(artifacts_dir / "experiment.png"))

        page.goto(f"{base}/#/experiments/{experiment}/runs/{trial.info.run_id}")
        page.get_by_text("optim.lr").first.wait_for(timeout=60_000)
        assert page.get_by_text(trial.data.params["optim.lr"]).count() >= 1
        page.screenshot(path=str(artifacts_dir / "trial-run.png"), full_page=True)

        page.goto(f"{base}/#/experiments/{experiment}/runs/{trial.info.run_id}/model-metrics")
        page.locator(".js-plotly-plot, canvas, svg.recharts-surface").first.wait_for(timeout=60_000)
        page.get_by_text("val_acc").first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts_dir / "trial-charts.png"), full_page=True)

        page.goto(f"{base}/#/experiments/{experiment}/runs/{outcome.parent_run_id}")
        page.get_by_text("Best value").first.wait_for(timeout=60_000)
        page.screenshot(path=str(artifacts_dir / "parent-run.png"), full_page=True)
    assert outside_loopback(requests) == []
