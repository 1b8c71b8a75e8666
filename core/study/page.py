"""A study's report page, and a nested estimate's (core/page.py writes them): made from what the study or estimate
logged on its parent run and holds in its Optuna storage, so their end and `python -m core report NAME` make the
same page.

A study's sections: the summary (the parent run's note), the spec as logged, the final configurations on fresh
seeds (`final/final.json`) when the study made them, the newest nested estimate of the same name
(`nested/nested.json` on that estimate's run) when there is one, Optuna's optimisation history and parallel
coordinates, the importances the study computed, and the learning curves of its top trials.

A nested estimate's: the summary (its run's note), the spec, the nested section (each outer fold's selected trial,
parameters and outer score; their mean and interval), the outer scores per fold beside the inner best values, and
the optimisation history of each fold's study.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
import yaml

from core import page
from core.errors import UserError
from core.names import epoch_keys, main_metric
from core.page import Figure, Text, markdown_cell
from core.runs import Run
from core.runs.logged import artifact_bytes, logged_fit, logged_params, newest_group
from core.runs.run import NOTE_TAG
from core.study.spec import StudySpec
from core.study.storage import logged_to_open, open_storage

SPEC_ARTIFACT = "spec.yaml"
FINAL_ARTIFACT, NESTED_ARTIFACT = "final/final.json", "nested/nested.json"  # written by the final phase, nested
NESTED_KIND = "nested"  # the kind tag of a nested estimate's run (core/study/nested.py), where nested.json is
REPORT_FOLDER = "report"  # the pages, as artifacts of the parent run
TOP_CURVES = 5  # learning curves of this many best trials: more lines are unreadable


def spec_yaml(spec: StudySpec, outer_folds: int | None = None) -> str:
    """The spec as this study runs it (file, overrides and command-line options applied): what the page shows;
    a nested estimate's adds its outer folds (the budget is each fold study's)."""
    space = {p.key: {("type" if k == "kind" else k): v for k, v in vars(p).items()  # as the spec file names them
                     if k != "key" and v not in (None, False, [], {})} for p in spec.params}
    document = {"name": spec.name, "file": spec.path, "seed": spec.seed, "config": spec.base.to_params(),
                "space": space, "objective": {"metrics": spec.metrics, "directions": spec.directions},
                "sampler": spec.sampler, "pruner": spec.pruner, "importance": spec.importance,
                "budget": {"trials": spec.trials, "timeout": spec.timeout, "target": spec.target,
                           "patience": spec.patience, "min_delta": spec.min_delta}}
    if spec.final:
        document["final"] = spec.final
    if outer_folds is not None:
        document["outer_folds"] = outer_folds
    return yaml.safe_dump(document, sort_keys=False)


def write_study_report(name: str, parent_run_id: str) -> Path:
    """The study's page, written to mlruns/reports/<name>.html and .md and logged on its parent run; its path."""
    parent = Run.of(parent_run_id, name)
    return _write(name, f"Study {name}", study_blocks(name, parent), parent)


def write_nested_report(name: str, run_id: str) -> Path:
    """The page of the nested estimate of study `name` (its run `run_id`), written to mlruns/reports/<name>.html
    and .md and logged on that run; its path."""
    run = Run.of(run_id, name)
    return _write(name, f"Nested estimate {name}", nested_blocks(name, run), run)


def _write(name: str, title: str, blocks: list[Text | Figure], run: Run) -> Path:
    html_path, md_path = page.write(name, title, blocks)
    for path in (html_path, md_path):
        run.log_artifact(path, REPORT_FOLDER)
    return html_path


def study_blocks(name: str, parent: Run) -> list[Text | Figure]:
    tags = parent.tags()
    try:
        storage = open_storage(logged_to_open(tags["storage"]))
        study = optuna.load_study(study_name=tags.get("study", name), storage=storage)
    except KeyError:  # a relative storage path, read from another folder than the study's
        raise UserError(f"study {name!r} is not in its storage {tags['storage']} as seen from here: "
                        "run this from the folder the study ran in") from None
    blocks: list[Text | Figure] = [Text(tags.get(NOTE_TAG, f"## Study `{name}`").replace("## Study", "## Summary:")),
                                   *spec_block(parent)]
    final = artifact_bytes(parent.id, FINAL_ARTIFACT)
    if final is not None:
        blocks.append(Text(final_section(json.loads(final))))
    estimate = newest_group(name, (NESTED_KIND,))  # a nested estimate of this study's name, on its own run
    nested = artifact_bytes(estimate.id, NESTED_ARTIFACT) if estimate else None
    if nested is not None:
        blocks.append(Text(nested_section(json.loads(nested))))
    blocks += optuna_figures(study)
    importances = {key.removeprefix("importance/"): value for key, value in parent.metrics().items()
                   if key.startswith("importance/")}
    if importances:
        blocks.append(importance_figure(importances))
    task = (logged_params(parent.id) or {}).get("task", "classification")
    curves = learning_curves(study, task)
    if curves is not None:
        blocks.append(curves)
    return blocks


def spec_block(run: Run) -> list[Text]:
    """The spec as the run logged it (spec.yaml), as a fenced block; none when it logged none."""
    spec = artifact_bytes(run.id, SPEC_ARTIFACT)
    if spec is None:
        return []
    return [Text("## Spec\n\n```yaml\n" + spec.decode("utf-8", "replace").rstrip() + "\n```")]


def nested_blocks(name: str, run: Run) -> list[Text | Figure]:
    """A nested estimate's page: its note, the spec, the nested section, the outer scores and each fold study's
    optimisation history (from the storage its run names, when that is readable from here)."""
    tags = run.tags()
    blocks: list[Text | Figure] = [Text(tags.get(NOTE_TAG, f"## Nested estimate `{name}`")
                                        .replace("## Nested estimate", "## Summary: nested estimate")),
                                   *spec_block(run)]
    logged = artifact_bytes(run.id, NESTED_ARTIFACT)
    if logged is None:
        return blocks + [Text("No outer fold has finished yet.")]
    nested = json.loads(logged)
    blocks += [Text(nested_section(nested)), outer_scores_figure(nested)]
    studies = fold_studies(nested, tags.get("storage", ""))
    if studies:
        blocks.append(fold_history_figure(studies, nested["metric"]))
    return blocks


def _interval(scores: dict[str, Any]) -> str:
    """mean ± std [95% interval] (n), as final.json and nested.json hold them."""
    return (f"{_number(scores['mean'])} ± {_number(scores['std'])} [{_number(scores['ci_low'])}, "
            f"{_number(scores['ci_high'])}] (n={scores['n']})")


def _number(value: Any) -> str:
    """A score as the tables show it; "-" for none (a spread over one seed may be written as null)."""
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def final_section(final: dict[str, Any]) -> str:
    """The best configurations trained again on fresh seeds: each one's spread over the seeds, the chosen one."""
    metric, test = final["metric"], final["test_metric"]
    lines = ["## Final training on fresh seeds", "",
             f"The top {final['top']} configurations of the search, each trained again with seeds "
             f"{', '.join(map(str, final['seeds']))}; ranked by {final['ranked_by']} ({final['direction']}). "
             "Mean ± standard deviation [95% t-interval] over the seeds:", "",
             f"| rank | trial | {metric} | {test} | parameters |", "|---|---|---|---|---|"]
    for configuration in final["configurations"]:
        params = ", ".join(f"{key}={_short(value)}" for key, value in configuration["params"].items())
        lines.append(f"| {configuration['rank']} | {configuration['trial']} | {_interval(configuration['val'])} | "
                     f"{_interval(configuration['test'])} | {markdown_cell(params)} |")
    chosen = final["chosen"]
    lines += ["", f"**Chosen: rank {chosen['rank']} (trial {chosen['trial']})**; its served model is run "
                  f"`{chosen['run_id']}` (seed {chosen['seed']}: {markdown_cell(chosen['why'])}).", "",
              f"| rank | seed | {metric} | {test} | run |", "|---|---|---|---|---|"]
    for configuration in final["configurations"]:
        for run in configuration["runs"]:
            lines.append(f"| {configuration['rank']} | {run['seed']} | {_number(run['val'])} | "
                         f"{_number(run['test'])} | `{run['run_id']}` |")
    return "\n".join(lines)


def nested_section(nested: dict[str, Any]) -> str:
    """The whole study (search and selection) run inside each outer fold, scored on that fold's held-out part."""
    outer = nested["outer"]
    lines = ["## Nested estimate", "",
             f"The whole study ran inside each of {nested['outer_folds']} outer folds of the training part; the "
             f"configuration each one selected (best {nested['metric']}, {nested['direction']}) was scored on "
             f"its fold's held-out part ({nested['outer_metric']}).", "",
             f"**{nested['outer_metric']}: {_interval(outer)}** (mean ± std [95% t-interval] over outer folds)", "",
             f"| fold | study | selected trial | inner best {nested['metric']} | {nested['outer_metric']} | "
             "parameters | run |", "|---|---|---|---|---|---|---|"]
    for fold in nested["folds"]:
        params = ", ".join(f"{key}={_short(value)}" for key, value in fold["params"].items())
        lines.append(f"| {fold['fold']} | {markdown_cell(fold['study'])} | {fold['selected_trial']} | "
                     f"{_number(fold['inner_best'])} | {_number(fold['outer'])} | {markdown_cell(params)} | "
                     f"`{fold['run_id']}` |")
    return "\n".join(lines)


def outer_scores_figure(nested: dict[str, Any]) -> Figure:
    """Each outer fold's score on its held-out part beside its study's inner best, with the mean and the 95%
    t-interval of the outer scores."""
    import plotly.graph_objects as go

    folds = nested["folds"]
    labels = [f"fold {fold['fold']}" for fold in folds]
    title = f"{nested['outer_metric']} of each fold's selected configuration on its held-out part"
    figure = go.Figure()
    figure.add_scatter(x=labels, y=[fold["outer"] for fold in folds], mode="markers", marker={"size": 12},
                       name=f"outer {nested['outer_metric']} (held-out fold)")
    figure.add_scatter(x=labels, y=[fold["inner_best"] for fold in folds], mode="markers",
                       marker={"size": 10, "symbol": "diamond-open"}, name=f"inner best {nested['metric']}")
    outer = nested["outer"]
    if outer["mean"] is not None:
        figure.add_hline(y=outer["mean"], line_dash="dash", annotation_text=f"mean {outer['mean']:.4f}")
    if outer["ci_low"] is not None:
        figure.add_hrect(y0=outer["ci_low"], y1=outer["ci_high"], opacity=0.12, line_width=0, fillcolor="#1f77b4",
                         annotation_text="95% t-interval of the mean", annotation_position="bottom left")
    figure.update_layout(title=title, xaxis_title="outer fold", yaxis_title="score", height=420,
                         legend={"orientation": "h", "y": -0.2})
    return Figure("Outer scores", plotly_json=figure.to_json())


def fold_studies(nested: dict[str, Any], storage: str) -> list[optuna.Study]:
    """Each outer fold's study with a complete trial to draw, as far as its storage holds it as seen from here."""
    if not storage:
        return []
    backend, studies = open_storage(logged_to_open(storage)), []
    for fold in nested["folds"]:
        try:
            study = optuna.load_study(study_name=fold["study"], storage=backend)
        except KeyError:  # a relative storage path, read from another folder than the estimate's
            continue
        if study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            studies.append(study)
    return studies


def fold_history_figure(studies: list[optuna.Study], metric: str) -> Figure:
    """The optimisation history of each fold's study, a colour per fold (Optuna's plot of several studies)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figure = optuna.visualization.plot_optimization_history(studies, target_name=metric)
    figure.update_layout(title="Optimisation history of each outer fold's study")
    return Figure("Optimisation history of each outer fold's study", plotly_json=figure.to_json())


def optuna_figures(study: optuna.Study) -> list[Figure]:
    """Optuna's optimisation history and parallel coordinates (of the first objective in a multi-objective study),
    when there is a complete trial to draw."""
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return []
    kwargs: dict[str, Any] = {}
    if len(study.directions) > 1:
        kwargs = {"target": lambda t: t.values[0], "target_name": (study.metric_names or ["objective 0"])[0]}
    figures = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. the parallel coordinates of one parameter
        for title, plot in (("Optimisation history", optuna.visualization.plot_optimization_history),
                            ("Parallel coordinates", optuna.visualization.plot_parallel_coordinate)):
            figures.append(Figure(title, plotly_json=plot(study, **kwargs).to_json()))
    return figures


def importance_figure(importances: dict[str, float]) -> Figure:
    """The importances the study computed (its parent run's importance/* metrics, by the spec's evaluator)."""
    import plotly.graph_objects as go

    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = go.Figure(go.Bar(x=[value for _, value in ordered], y=[key for key, _ in ordered], orientation="h"))
    figure.update_layout(title="Parameter importances", xaxis_title="importance", margin={"l": 160})
    return Figure("Parameter importances", plotly_json=figure.to_json())


def learning_curves(study: optuna.Study, task: str) -> Figure | None:
    """The per-epoch curves (names.epoch_keys) of the top trials, a panel per key, a line per trial; None when
    no top trial logged epochs (e.g. K-fold trials, whose epochs are on their fold runs)."""
    from plotly.subplots import make_subplots

    keys = epoch_keys(task)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.values[0], reverse=study.directions[0].name == "MAXIMIZE")
    columns = 2
    figure = make_subplots(rows=math.ceil(len(keys) / columns), cols=columns, subplot_titles=keys)
    drawn = 0
    for index, trial in enumerate(ranked[:TOP_CURVES]):
        run_id = trial.user_attrs.get("mlflow_run_id", "")
        history = logged_fit(run_id).history if run_id else []
        for position, key in enumerate(keys):
            values = [epoch[key] for epoch in history if key in epoch]
            if values:
                figure.add_scatter(y=values, x=list(range(len(values))), mode="lines+markers",
                                   name=f"trial {trial.number}", legendgroup=str(trial.number),
                                   showlegend=position == 0, line={"color": _COLORS[index % len(_COLORS)]},
                                   row=position // columns + 1, col=position % columns + 1)
                drawn += 1
    if not drawn:
        return None
    title = f"Learning curves of the top {min(TOP_CURVES, len(ranked))} trials ({main_metric(task)}, loss)"
    figure.update_layout(title=title, height=320 * math.ceil(len(keys) / columns))
    figure.update_xaxes(title_text="epoch")
    return Figure(title, plotly_json=figure.to_json())


_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"]


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
