"""A study's report page (core/page.py writes it): made from what the study logged on its parent run and holds in
its Optuna storage, so the study's end and `python -m core report NAME` make the same page.

Its sections: the summary (the parent run's note), the spec as logged, the final configurations on fresh seeds
(`final/final.json`) and the nested estimate (`nested/nested.json`) when the study made them, Optuna's
optimisation history and parallel coordinates, the importances the study computed, and the learning curves of
its top trials.
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
from core.runs.logged import artifact_bytes, logged_fit, logged_params
from core.runs.run import NOTE_TAG
from core.study.spec import StudySpec
from core.study.storage import open_storage

SPEC_ARTIFACT = "spec.yaml"
FINAL_ARTIFACT, NESTED_ARTIFACT = "final/final.json", "nested/nested.json"  # written by the final phase, nested
REPORT_FOLDER = "report"  # the pages, as artifacts of the parent run
TOP_CURVES = 5  # learning curves of this many best trials: more lines are unreadable


def spec_yaml(spec: StudySpec) -> str:
    """The spec as this study runs it (file, overrides and command-line options applied): what the page shows."""
    space = {p.key: {("type" if k == "kind" else k): v for k, v in vars(p).items()  # as the spec file names them
                     if k != "key" and v not in (None, False, [], {})} for p in spec.params}
    document = {"name": spec.name, "file": spec.path, "seed": spec.seed, "config": spec.base.to_params(),
                "space": space, "objective": {"metrics": spec.metrics, "directions": spec.directions},
                "sampler": spec.sampler, "pruner": spec.pruner, "importance": spec.importance,
                "budget": {"trials": spec.trials, "timeout": spec.timeout, "target": spec.target,
                           "patience": spec.patience, "min_delta": spec.min_delta}}
    return yaml.safe_dump(document, sort_keys=False)


def write_study_report(name: str, parent_run_id: str) -> Path:
    """The study's page, written to mlruns/reports/<name>.html and .md and logged on its parent run; its path."""
    parent = Run.of(parent_run_id, name)
    blocks = study_blocks(name, parent)
    html_path, md_path = page.write(name, f"Study {name}", blocks)
    for path in (html_path, md_path):
        parent.log_artifact(path, REPORT_FOLDER)
    return html_path


def study_blocks(name: str, parent: Run) -> list[Text | Figure]:
    tags = parent.tags()
    try:
        study = optuna.load_study(study_name=tags.get("study", name), storage=open_storage(tags["storage"]))
    except KeyError:  # a relative storage path, read from another folder than the study's
        raise UserError(f"study {name!r} is not in its storage {tags['storage']} as seen from here: "
                        "run this from the folder the study ran in") from None
    blocks: list[Text | Figure] = [Text(tags.get(NOTE_TAG, f"## Study `{name}`").replace("## Study", "## Summary:"))]
    spec = artifact_bytes(parent.id, SPEC_ARTIFACT)
    if spec is not None:
        blocks.append(Text("## Spec\n\n```yaml\n" + spec.decode("utf-8", "replace").rstrip() + "\n```"))
    for artifact, section in ((FINAL_ARTIFACT, final_section), (NESTED_ARTIFACT, nested_section)):
        logged = artifact_bytes(parent.id, artifact)
        if logged is not None:
            blocks.append(Text(section(json.loads(logged))))
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
