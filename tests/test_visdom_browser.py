"""A real training run shown live in Visdom, checked in headless Chromium with no internet."""

from __future__ import annotations

import pytest

from core.config import Config
from core.runs import Place, tracked_fit
from tests.browser import browser_page, outside_loopback
from tests.test_visdom import server, window_steps  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser


def test_loss_curve_in_the_browser(server, chromium_path, artifacts_dir):  # noqa: F811
    config = Config().apply({"data.name": "synthetic", "data.samples": 400, "data.shape": [1, 8, 8],
                             "model.hidden": [16], "train.epochs": 4, "train.batch_size": 32, "device": "cpu",
                             "track.visdom": "on", "track.visdom_url": server, "track.flush_every": 5,
                             "track.log_model": False, "track.figures": False})
    # Two runs with the same label: each its own line (the label ends with the run's id), no diagonal joining them
    runs = [tracked_fit(config, Place("browser check", "run 1")) for _ in range(2)]
    labels = [f"run 1 [{tracked.run_id[:6]}]" for tracked in runs]
    logged = list(range(runs[0].result.steps))
    assert window_steps(server, "browser_check", "train_loss_step") == {label: logged for label in labels}

    with browser_page(chromium_path) as (page, requests):
        page.goto(f"{server}/env/browser_check", wait_until="networkidle")
        page.wait_for_selector(".js-plotly-plot .scatterlayer .trace", timeout=30_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(artifacts_dir / "visdom.png"), full_page=True)
        # What the page drew: the x values of the step-loss line in plotly's own data.
        drawn = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(plot => (plot.layout.title.text || plot.layout.title) === 'train loss per step')
            .map(plot => plot.data.map(trace => [trace.name, Array.from(trace.x)]))""")
    assert drawn == [[[label, logged] for label in labels]]
    assert outside_loopback(requests) == []
