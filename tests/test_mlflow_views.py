"""A study's trial in the MLflow UI, opened as a newcomer would: by the link `python -m core ui` prints.

MLflow 3.17 picks the "Model training" or the GenAI layout from the URL's `?workflowType=` or else the
browser's local storage `mlflow.workflowType_v1` (GenAI by default); its chart view puts one section per
metric prefix, sorted by name, before the keys without one. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from core.study import load_spec, run_study
from tests.browser import browser_page, outside_loopback
from tests.helpers import cli_env, free_port, tiny_study_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SECTIONS = ("epoch", "step", "summary")  # the order a newcomer should see: the curves, then the summary


@pytest.fixture
def printed_urls(tmp_path):
    """{what: URL} as the ui command prints them, while it runs, after a tiny study."""
    outcome = run_study(load_spec(tiny_study_spec(tmp_path, name="views", trials=2)))
    server = subprocess.Popen([sys.executable, "-m", "core", "ui", "--port", str(free_port())], cwd=tmp_path,
                              env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        urls = {}
        for line in server.stdout:
            if line.startswith("Ctrl-C"):
                break
            what, _, url = line.strip().partition(": ")
            urls[what] = url
        yield outcome, urls
    finally:
        server.terminate()
        server.wait(30)


def model_training_layout(page) -> bool:
    """The Model training layout's side bar links Runs and Models; the GenAI one has Evaluation runs instead."""
    page.get_by_role("link", name="Traces").first.wait_for(timeout=60_000)
    return (page.get_by_role("link", name="Models", exact=True).count() == 1
            and page.get_by_role("link", name="Evaluation runs").count() == 0)


def test_the_printed_trial_link_opens_model_training_with_the_curves_first(printed_urls, chromium_path,
                                                                           artifacts_dir):
    outcome, urls = printed_urls
    url = urls["best trial"]
    assert outcome.best_run_id in url and "workflowType=machine_learning" in url
    with browser_page(chromium_path) as (page, requests):  # a fresh browser: nothing in its local storage
        page.goto(url.split("?")[0])  # the control: without the URL's parameter, MLflow shows GenAI
        page.get_by_text("optim.lr").first.wait_for(timeout=90_000)
        assert not model_training_layout(page)
        page.screenshot(path=str(artifacts_dir / "trial-without-parameter-genai.png"))
    with browser_page(chromium_path) as (page, requests):
        page.goto(url)
        page.get_by_text("optim.lr").first.wait_for(timeout=90_000)
        assert model_training_layout(page)
        assert page.get_by_text("trial_number").count() >= 1  # a param too: a chart axis and group key
        page.screenshot(path=str(artifacts_dir / "trial-model-training.png"), full_page=True)

        page.get_by_role("tab", name="Model metrics").click()
        headers = [page.get_by_text(name, exact=True).first for name in SECTIONS]  # a section's title
        for header in headers:
            header.wait_for(timeout=60_000)
        tops = [header.bounding_box()["y"] for header in headers]
        assert tops == sorted(tops), dict(zip(SECTIONS, tops))
        page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
        page.wait_for_timeout(3000)  # the other charts draw
        page.screenshot(path=str(artifacts_dir / "trial-charts.png"))
        headers[-1].scroll_into_view_if_needed()
        page.wait_for_timeout(3000)
        page.screenshot(path=str(artifacts_dir / "trial-charts-summary.png"))

        # The study's plots: light pages that draw with the parent run's one plotly.js.
        base, experiment = url.split("/#/")[0], url.split("/experiments/")[1].split("/")[0]
        page.goto(f"{base}/#/experiments/{experiment}/runs/{outcome.parent_run_id}/artifacts/plots/"
                  f"optimization_history.html?workflowType=machine_learning")
        page.frame_locator("iframe").first.locator("svg.main-svg").first.wait_for(timeout=90_000)
        page.screenshot(path=str(artifacts_dir / "optimization-history.png"))
    assert any("plotly.min.mjs" in request for request in requests)
    assert outside_loopback(requests) == []


def test_a_plot_page_opened_from_disk_draws_with_the_plotly_beside_it(tmp_path, chromium_path):
    import plotly.graph_objects as go

    from core.study import plots

    page_file = tmp_path / "plot.html"
    page_file.write_text(plots.page(go.Figure(go.Scatter(x=[0, 1, 2], y=[3, 1, 2])), "a plot", "0" * 32))
    assert page_file.stat().st_size < 10_000  # no plotly.js inside
    with browser_page(chromium_path) as (page, requests):
        page.goto(page_file.as_uri())
        page.wait_for_timeout(2000)
        assert "did not load" in page.inner_text("#plot")  # without the file: says where it should be
    plots.write_plotly(tmp_path)
    with browser_page(chromium_path) as (page, requests):
        page.goto(page_file.as_uri())
        page.locator("svg.main-svg").first.wait_for(timeout=30_000)
    assert outside_loopback(requests) == []


def test_the_printed_study_link_shows_each_trials_state_and_scores_as_columns(printed_urls, chromium_path,
                                                                              artifacts_dir):
    """The runs table's columns are chosen by the store (the study's saved view, an experiment tag) and the
    URL (`viewStateShareKey`): no Columns menu to open first."""
    _, urls = printed_urls
    url = urls["MLflow UI"]
    assert "viewStateShareKey=core-study" in url
    with browser_page(chromium_path) as (page, requests):  # a fresh browser: no columns chosen before
        page.goto(url)
        page.locator('[role="gridcell"]').first.wait_for(timeout=90_000)
        for column in ("state", "summary/final_val_acc", "summary/test_acc"):
            page.locator('[role="columnheader"]', has_text=column).first.wait_for(timeout=30_000)
        page.screenshot(path=str(artifacts_dir / "study-columns.png"))
    assert outside_loopback(requests) == []
