"""The report page of a study and of a comparison: its sections made from what they logged on their parent run,
written at their end and by `python -m core report NAME`, self-contained and offline (checked in headless Chromium)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from core.__main__ import main
from core.runs import Run
from core.runs.logged import artifact_paths
from tests.browser import browser_page
from tests.helpers import TINY_CONFIG, all_runs, mlflow_client, tiny_study_spec

NAME = "page study"
HOSTILE = "<img src=x onerror=alert(1)>"  # a user-given value: shown as text, never markup


def final_json(run_ids: list[str]) -> dict:
    """final/final.json as the final phase writes it (the contract of issue 36), on real trial runs."""
    def configuration(rank: int, trial: int, val: float, params: dict) -> dict:
        runs = [{"seed": 1001 + i, "run_id": run_ids[i % len(run_ids)], "val": val + 0.001 * i, "test": val - 0.01}
                for i in range(3)]
        scores = {"std": 0.001, "n": 3}
        return {"rank": rank, "trial": trial, "params": params, "runs": runs,
                "val": {"mean": val + 0.001, "ci_low": val - 0.0015, "ci_high": val + 0.0035, **scores},
                "test": {"mean": val - 0.01, "ci_low": val - 0.0125, "ci_high": val - 0.0075, **scores}}
    return {"metric": "val_acc", "test_metric": "test_acc", "direction": "maximize", "top": 2,
            "seeds": [1001, 1002, 1003], "ranked_by": "mean val_acc over seeds",
            "chosen": {"rank": 1, "trial": 2, "run_id": run_ids[1], "seed": 1002, "why": "median seed on val_acc"},
            "configurations": [configuration(1, 2, 0.9512, {"optim.lr": 0.0123, "model.name": HOSTILE}),
                               configuration(2, 0, 0.9377, {"optim.lr": 0.201, "model.name": "mlp"})]}


def nested_json(run_ids: list[str]) -> dict:
    folds = [{"fold": fold, "study": f"{NAME}-outer-{fold}", "run_id": run_ids[fold % len(run_ids)],
              "selected_trial": fold + 1, "params": {"optim.lr": 0.05 + fold / 100}, "inner_best": 0.96,
              "outer": outer} for fold, outer in enumerate([0.941, 0.955, 0.948])]
    return {"metric": "val_acc", "outer_metric": "test_acc", "direction": "maximize", "outer_folds": 3,
            "folds": folds, "outer": {"mean": 0.948, "std": 0.007, "ci_low": 0.9306, "ci_high": 0.9654, "n": 3}}


@pytest.fixture
def study(tmp_path, capsys) -> dict:
    """A tiny study run through the CLI (in this process), its closing summary, and its page as the study wrote it."""
    config = {**TINY_CONFIG, "train": {"epochs": 2, "batch_size": 32}}
    spec = tiny_study_spec(tmp_path, name=NAME, trials=3, config=config)
    assert main(["study", str(spec)]) == 0
    printed = capsys.readouterr().out
    runs = all_runs(NAME)
    parent_id = next(run.info.run_id for run in runs if run.data.tags.get("kind") == "study")
    trials = [run.info.run_id for run in runs if run.data.tags.get("kind") != "study"]
    return {"printed": printed, "parent": parent_id, "trials": trials}


def log_fixtures(parent_id: str, trials: list[str]) -> None:
    """final.json on the study's parent; nested.json on an older nested estimate's run of the same name (the study
    stays the newest: `report NAME` writes its page, with the nested section)."""
    client = mlflow_client()
    parent = Run.of(parent_id, NAME)
    parent.log_text(json.dumps(final_json(trials)), "final/final.json")
    started = client.get_run(parent_id).info.start_time - 60_000
    estimate = client.create_run(client.get_experiment_by_name(NAME).experiment_id, start_time=started,
                                 run_name=f"nested {NAME} 3 outer folds", tags={"kind": "nested", "study": NAME})
    client.log_text(estimate.info.run_id, json.dumps(nested_json(trials)), "nested/nested.json")
    client.set_terminated(estimate.info.run_id, "FINISHED")


@pytest.fixture
def nested(tmp_path, capsys) -> dict:
    """A tiny nested estimate (2 outer folds, 2 trials each) run through the CLI: its closing summary, its run and
    nested.json."""
    config = {**TINY_CONFIG, "train": {"epochs": 1, "batch_size": 32}}
    spec = tiny_study_spec(tmp_path, name=NAME, trials=2, config=config)
    assert main(["study", str(spec), "--outer-folds", "2"]) == 0
    printed = capsys.readouterr().out
    (run_id,) = [run.info.run_id for run in all_runs(NAME) if run.data.tags.get("kind") == "nested"]
    result = json.loads(Run.of(run_id, NAME).read_text("nested/nested.json"))
    return {"printed": printed, "spec": spec, "run": run_id, "result": result}


def test_the_study_writes_its_page_and_report_remakes_it_with_the_final_and_nested_sections(study, capsys):
    page = Path("mlruns/reports/page_study.html").resolve()
    assert f"report page:             {page}  (python -m core report 'page study' --open)" in study["printed"]
    first = page.read_text()
    assert "Optimisation history" in first and "Learning curves of the top 3 trials" in first
    assert "Final training" not in first and "Nested estimate" not in first  # nothing logged: nothing shown
    assert {"report/page_study.html", "report/page_study.md"} <= set(artifact_paths(study["parent"], "report"))
    spec = yaml.safe_load(page.with_suffix(".md").read_text().split("```yaml\n")[1].split("```")[0])
    assert spec["space"]["optim.lr"]["type"] == "float" and spec["config"]["train.epochs"] == 2  # as it ran

    log_fixtures(study["parent"], study["trials"])
    assert main(["report", NAME]) == 0
    assert capsys.readouterr().out.splitlines()[0] == str(page)
    html, markdown = page.read_text(), page.with_suffix(".md").read_text()
    for text in (html, markdown):
        assert "Final training on fresh seeds" in text and "Nested estimate" in text
        assert "0.9522 ± 0.0010 [0.9497, 0.9547] (n=3)" in text  # rank 1's val_acc over the seeds
        assert "0.9480 ± 0.0070 [0.9306, 0.9654] (n=3)" in text  # the outer folds' test_acc
        assert study["trials"][1] in text and f"{NAME}-outer-2" in text
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert HOSTILE not in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown  # text in a viewer too
    assert "http://" not in html.split("<script>")[0] and "src=\"http" not in html


def test_a_nested_estimate_writes_its_page_and_a_later_study_of_its_name_shows_it_too(nested, capsys):
    from core.study.spread import shown

    page = Path("mlruns/reports/page_study.html").resolve()
    assert f"report page:                  {page}  (python -m core report 'page study' --open)" in nested["printed"]
    result = nested["result"]
    scores = [f"{fold['outer']:.4f}" for fold in result["folds"]] + [shown(result["outer"])]  # each fold's, the mean
    assert len(result["folds"]) == 2 and None not in [fold["outer"] for fold in result["folds"]]
    html, markdown = page.read_text(), page.with_suffix(".md").read_text()
    assert "<title>Nested estimate page study</title>" in html
    for text in (html, markdown):
        assert "Summary: nested estimate" in text and "outer_folds: 2" in text
        assert "The whole study ran inside each of 2 outer folds" in text  # the nested section
        assert all(score in text for score in scores), scores
        assert all(fold["study"] in text for fold in result["folds"])  # each fold's study and selected trial
    assert "Outer scores" in html and "Optimisation history of each outer fold" in html
    assert {"report/page_study.html", "report/page_study.md"} <= set(artifact_paths(nested["run"], "report"))

    assert main(["report", NAME]) == 0  # the newest of that name: the estimate (its fold studies are not NAME's)
    assert capsys.readouterr().out.splitlines()[0] == str(page)
    assert "<title>Nested estimate page study</title>" in page.read_text()

    assert main(["study", str(nested["spec"])]) == 0  # a plain study of the same name, after it
    assert f"report page:             {page}" in capsys.readouterr().out
    assert main(["report", NAME]) == 0
    for text in (page.read_text(), page.with_suffix(".md").read_text()):
        assert "Study page study" in text and "Optimisation history" in text  # the study's own page ...
        assert "The whole study ran inside each of 2 outer folds" in text  # ... with the estimate's section
        assert all(score in text for score in scores)


def test_report_of_an_unknown_name_is_one_line_and_writes_nothing(tmp_path, capsys):
    config = {**TINY_CONFIG, "train": {"epochs": 1, "batch_size": 32}}
    assert main(["study", str(tiny_study_spec(tmp_path, name="other", trials=1, config=config))]) == 0
    capsys.readouterr()
    assert main(["report", "no such study"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study or comparison named 'no such study'" in err
    assert not Path("mlruns/reports/no_such_study.html").exists()
    assert mlflow_client().get_experiment_by_name("no such study") is None  # looked up, not made


def test_report_open_opens_the_page_in_a_browser(study, monkeypatch, capsys):
    opened = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    assert main(["report", NAME, "--open"]) == 0
    assert opened == [Path("mlruns/reports/page_study.html").resolve().as_uri()]


def offline_render(chromium_path: str, page_file: Path, screenshot: Path, ready: str) -> dict:
    """Open the page from disk with every request but file: refused; what it asked for, and what it drew."""
    with browser_page(chromium_path, width=1300, height=900) as (page, requests):
        refused = []

        def only_files(route):
            if route.request.url.startswith(("file:", "data:")):
                route.continue_()
            else:
                refused.append(route.request.url)
                route.abort()
        page.route("**/*", only_files)
        page.goto(page_file.as_uri(), wait_until="load")
        page.wait_for_function(ready, timeout=30_000)
        page.wait_for_timeout(300)
        page.screenshot(path=str(screenshot), full_page=True)
        drawn = page.evaluate("""() => ({
            svgs: document.querySelectorAll('.plot .main-svg').length,
            traces: [...document.querySelectorAll('.plot')].map(plot => (plot.data || []).length),
            images: [...document.images].map(image => image.complete && image.naturalWidth > 0),
            tables: document.querySelectorAll('table').length,
            hostile: document.querySelectorAll('img[src="x"]').length,
            text: document.body.innerText})""")
    return {"requests": requests, "refused": refused, **drawn}


@pytest.mark.browser
def test_the_study_page_renders_offline_in_chromium(study, chromium_path, artifacts_dir, capsys):
    log_fixtures(study["parent"], study["trials"])
    Run.of(study["parent"], NAME).log_values({"importance/optim.lr": 0.8, "importance/model.name": 0.2}, 10)
    assert main(["report", NAME]) == 0
    page_file = Path(capsys.readouterr().out.splitlines()[0])
    shown = offline_render(chromium_path, page_file, artifacts_dir / "study_page.png",
                           "document.querySelectorAll('.plot .main-svg').length >= 4")
    assert shown["refused"] == [] and all(url.startswith("file:") for url in shown["requests"])
    # history, parallel coordinates, the importances the study logged, learning curves
    assert len(shown["traces"]) == 4 and all(shown["traces"])
    assert shown["tables"] == 4 and shown["hostile"] == 0 and HOSTILE in shown["text"]
    print(f"study page: {page_file.stat().st_size / 1e6:.2f} MB")


@pytest.mark.browser
@pytest.mark.slow
def test_the_comparison_page_renders_offline_in_chromium(tmp_path, chromium_path, artifacts_dir, capsys):
    spec = {"name": "page compare", "seed": 0, "k": 2, "repeats": 1,
            "config": {**TINY_CONFIG, "train": {"epochs": 2, "batch_size": 32}},
            "remedies": {"baseline": {}, "l2": {"optim.weight_decay": 0.01}},
            "sweeps": {"l2": {"key": "optim.weight_decay", "values": [0.001, 0.01]}}}
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["compare", str(path)]) == 0
    page_file = Path("mlruns/reports/page_compare.html").resolve()
    assert f"report page: {page_file}" in capsys.readouterr().out
    shown = offline_render(chromium_path, page_file, artifacts_dir / "comparison_page.png",
                           "[...document.images].every(image => image.complete)")
    assert shown["refused"] == [] and all(url.startswith(("file:", "data:")) for url in shown["requests"])
    assert shown["images"] == [True, True, True]  # curves, scores per fold, the l2 sweep
    assert shown["tables"] == 2 and "Holm" in shown["text"]  # the comparison's table and the sweep's
    assert "<script" not in page_file.read_text()  # PNG figures only: no plotly.js
    print(f"comparison page: {page_file.stat().st_size / 1e6:.2f} MB")


@pytest.mark.browser
def test_the_nested_page_renders_offline_in_chromium(nested, chromium_path, artifacts_dir):
    page_file = Path("mlruns/reports/page_study.html").resolve()
    shown = offline_render(chromium_path, page_file, artifacts_dir / "nested_page.png",
                           "document.querySelectorAll('.plot .main-svg').length >= 2")
    assert shown["refused"] == [] and all(url.startswith("file:") for url in shown["requests"])
    assert len(shown["traces"]) == 2 and all(shown["traces"])  # the outer scores, each fold study's history
    assert shown["tables"] == 1 and "Nested estimate" in shown["text"] and "NaN" not in shown["text"]
