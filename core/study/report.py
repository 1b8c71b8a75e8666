"""The study's parent run in MLflow: best so far, the trials table, Optuna's plots, a summary note.

Cheap facts (the trial's value, the best value) are logged after every trial.
The table and note are refreshed at most every `REFRESH_SECONDS`, and the plots
at the end, so bookkeeping per trial stays flat as a study grows.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import optuna.visualization as plotly_plots
import optuna.visualization.matplotlib as png_plots
import pandas as pd
from matplotlib import pyplot as plt

from core.names import logged_summary, summary_key
from core.outages import best_effort
from core.runs import Place, Run, views
from core.runs.logged import log_served_model_of
from core.runs.run import NOTE_TAG, active
from core.study import page, plots
from core.study.spec import StudySpec, make_importance_evaluator, result_key
from core.study.spread import shown
from core.study.stopping import stopped_by
from core.study.storage import as_logged
from core.tracking.visdom_sink import make_visdom_tracker

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
BEST_MODEL_TAG = "best_model_run_id"  # the trial run that holds the study's model in MLflow's format
PLOTS = ("optimization_history", "param_importances", "parallel_coordinate", "intermediate_values")
MIN_IMPORTANCE_TRIALS = 10  # below this, importances are noise: not computed, and the note says so
NO_PNG = {"parallel_coordinate"}  # its static image is unreadable (labels overlap): the HTML only


@dataclass
class StudyOutcome:
    name: str
    storage: str
    parent_run_id: str
    finished: int
    pruned: int
    failed: int
    best_values: list[float] | None
    best_params: dict[str, Any]
    best_run_id: str
    best_trial: int | None
    epochs_used: int
    pareto_front: list[tuple[int, list[float]]] = field(default_factory=list)  # multi-objective: (trial, values)
    importances: dict[str, float] | None = None  # parameter -> importance, largest first; None: not computed
    importance_note: str = ""  # why they were not computed, or that they are rough
    stopped_by: str = ""  # the budget rule that stopped the study: target, patience, or "" (trials, timeout)
    stopped_detail: str = ""
    best_test: tuple[str, float] | None = None  # the best trial's test score as its run logged it (test_acc, 0.98)
    tie_note: str = ""  # several trials share the best value: how many, and what one validation sample is worth
    final: dict | None = None  # the final phase's result (final/final.json, study.final), when it ran
    interrupted: bool = False
    already_done: bool = False  # the study had its trials before this command: nothing was run
    report_page: str = ""  # the study's report page (mlruns/reports/<name>.html), "" when none was written


class StudyReporter:
    def __init__(self, spec: StudySpec, study: optuna.Study, storage: str, parent_run_id: str | None = None):
        self.spec, self.study, self.storage = spec, study, storage
        self.parent_run_id = parent_run_id or ""
        self.parent = Run.of(self.parent_run_id, spec.experiment)
        self._last_refresh = time.monotonic()
        self.importances: dict[str, float] | None = None
        self.importance_note = ""
        self._importance_trials = -1  # complete trials when they were last computed
        self.final: dict | None = None  # the final phase's result (study.final): its chosen run is served

    # ---- the parent run's life (opened by the runner: core.runs.open_run) ---------------
    def parent_place(self) -> Place:
        """The study's parent run: reopened when the study resumes (and its run is still there), else new."""
        tags = {"study": self.spec.name, "kind": "study", "storage": as_logged(self.storage),
                "objective": ",".join(f"{m}:{d}" for m, d in zip(self.spec.metrics, self.spec.directions))}
        if self.spec.within_run:  # a nested estimate's fold study: its parent is the outer fold's run
            tags["within"] = self.spec.within_run
        return Place(self.spec.experiment, f"study {self.spec.name}", self.spec.within_run or None, tags,
                     reopen=self.study.user_attrs.get("mlflow_parent_run_id", ""))

    def started(self, parent: Run) -> str:
        """A new parent run gets what every trial shares as params, and the study holds its id."""
        self.parent, self.parent_run_id = parent, parent.id
        if self.study.user_attrs.get("mlflow_parent_run_id") != parent.id:
            # Params: what every trial shares (the searched keys vary; the best trial's are the best.* tags)
            searched = {param.key for param in self.spec.params}
            fixed = {key: value for key, value in self.spec.base.to_params().items() if key not in searched}
            with parent.recorder() as record:
                record.log_params({**fixed, "study.sampler": self.spec.sampler["name"],
                                   "study.pruner": self.spec.pruner["name"], "study.seed": self.spec.seed})
            self.study.set_user_attr("mlflow_parent_run_id", parent.id)
            self._dashboard_note()
        parent.set_tags({"budget_trials": str(self.spec.trials)})
        parent.log_text(page.spec_yaml(self.spec), page.SPEC_ARTIFACT)  # as run now: a resume may change the budget
        self._save_columns()
        return parent.id

    def _save_columns(self) -> None:
        """The study's view of the runs table (`python -m core ui` opens it): each trial's state, objective and
        test score as columns."""
        scores = [summary_key(result_key(m)) for m in self.spec.metrics if m.startswith("val_")]
        tests = [summary_key("test_" + m.removeprefix("val_")) for m in self.spec.metrics if m.startswith("val_")]
        with best_effort("no saved view of the runs table"):  # the study stands without it, not on a full disk
            views.save_columns(self.spec.experiment, views.STUDY_VIEW, "study: state and scores",
                               [views.tag("state"), *map(views.metric, scores + tests)])

    def _dashboard_note(self) -> None:
        """The study's note in optuna-dashboard (`python -m core dashboard`): where its MLflow runs are."""
        with best_effort("no dashboard note"):  # the study stands without its note, but not on a full disk
            import optuna_dashboard

            optuna_dashboard.save_note(self.study, (
                f"MLflow experiment `{self.spec.experiment}`, parent run `{self.parent_run_id}`. Each trial's MLflow "
                f"run id is its user attribute `mlflow_run_id`; open them with `python -m core ui`."))

    def report_unfinished(self) -> bool:
        """The parent run exists and did not end FINISHED: its final report (plots, the best model) was cut
        short, e.g. by a full disk, and a rerun makes it again."""
        return bool(self.parent_run_id) and active(self.parent_run_id) and self.parent.status_now() != "FINISHED"

    # ---- as the study goes -----------------------------------------------------------
    def after_trial(self, trial: optuna.trial.FrozenTrial) -> None:
        """Cheap facts of the finished (frozen) trial now; the table and note when they are due."""
        if trial.state == optuna.trial.TrialState.COMPLETE and not self.spec.multi_objective:
            metrics = {"trial_value": trial.value, "best_value": self.study.best_value}
            self.parent.log_values(metrics, trial.number)
            self._send_best_to_visdom(trial.number, metrics["best_value"])
        if time.monotonic() - self._last_refresh >= REFRESH_SECONDS:
            self.refresh()

    def _send_best_to_visdom(self, number: int, best: float) -> None:
        if self.spec.base.track.visdom == "off":
            return
        live = make_visdom_tracker("auto", self.spec.base.track.visdom_url, self.spec.name, "best")
        if live is not None:
            with contextlib.closing(live):
                live.log_best(number, best)

    def refresh(self) -> None:
        """The trials table, the best trial as tags, and the summary note."""
        self._last_refresh = time.monotonic()
        frame = self.study.trials_dataframe(attrs=("number", "value", "values", "state", "params", "user_attrs",
                                                   "duration"))
        self.parent.log_text(frame.to_csv(index=False), "trials.csv")
        best = self.best_trials()
        if best and not self.spec.multi_objective:
            tags = {f"best.{key}": str(value) for key, value in best[0].params.items()}
            tags.update({"best_value": str(best[0].value), "best_trial": str(best[0].number),
                         "best_run_id": best[0].user_attrs.get("mlflow_run_id", "")})
            self.parent.set_tags(tags)
        if self.spec.multi_objective and best:
            pareto = pd.DataFrame([{"number": t.number, **dict(zip(self.spec.metrics, t.values)), **t.params}
                                   for t in best])
            self.parent.log_text(pareto.to_csv(index=False), "pareto_front.csv")
        self.update_importances(log_metrics=True)
        self.parent.set_tags({NOTE_TAG: self.summary_markdown()})

    def update_importances(self, log_metrics: bool = False) -> None:
        """Parameter importances by the spec's evaluator, once there are enough complete trials; as metrics
        `importance/<key>` (step: complete trials) on the parent run when `log_metrics`."""
        complete = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(complete) == self._importance_trials:
            return
        self._importance_trials = len(complete)
        self.importances = None
        if len(complete) < MIN_IMPORTANCE_TRIALS:
            self.importance_note = (f"not computed: {len(complete)} complete trials, "
                                    f"at least {MIN_IMPORTANCE_TRIALS} needed")
            return
        target = (lambda t: t.values[0]) if self.spec.multi_objective else None
        # PED-ANOVA warns on the terminal when a parameter's values were tried by fewer than 2 trials each: the
        # note (printed with the importances, kept on the parent run) says it instead
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                self.importances = optuna.importance.get_param_importances(
                    self.study, evaluator=make_importance_evaluator(self.spec), target=target)
            except Exception as error:  # e.g. every complete trial has the same value
                self.importance_note = f"not computed: {error}"
                return
        rough = any("Some regimes for parameter" in str(warning.message) for warning in caught)
        self.importance_note = "rough: some values of a parameter were tried by fewer than 2 trials" if rough else ""
        if log_metrics and self.importances:
            self.parent.log_values({f"importance/{key}": value for key, value in self.importances.items()},
                                   len(complete))

    def importance_line(self) -> str:
        evaluator = self.spec.importance["evaluator"]
        if not self.importances:
            return f"Parameter importance ({evaluator}): {self.importance_note}"
        shown = ", ".join(f"{key} {value:.2f}" for key, value in self.importances.items())
        note = f" ({self.importance_note})" if self.importance_note else ""
        return f"Parameter importance ({evaluator}): {shown}{note}"

    def best_trials(self) -> list:
        try:
            if self.spec.multi_objective:
                return list(self.study.best_trials)
            return [self.study.best_trial]
        except ValueError:  # no complete trial yet
            return []

    def counts(self) -> dict[str, int]:
        states = optuna.trial.TrialState
        trials = self.study.get_trials(deepcopy=False)
        return {"finished": sum(t.state == states.COMPLETE for t in trials),
                "pruned": sum(t.state == states.PRUNED for t in trials),
                "failed": sum(t.state == states.FAIL for t in trials),
                "running": sum(t.state == states.RUNNING for t in trials)}

    def summary_markdown(self, top: int = 10) -> str:
        """The parent run's description: best value, trial counts, the final phase's result, the top trials."""
        counts = self.counts()
        lines = [f"## Study `{self.spec.name}`", "",
                 f"Objective: {', '.join(f'{d} {m}' for m, d in zip(self.spec.metrics, self.spec.directions))}  ",
                 f"Trials: {counts['finished']} complete, {counts['pruned']} pruned, {counts['failed']} failed "
                 f"(budget {self.spec.trials})  ",
                 f"Sampler: {self.spec.sampler['name']}, pruner: {self.spec.pruner['name']}  ",
                 self.importance_line(), ""]
        rule = stopped_by(self.spec, self.study)
        if rule:
            lines[-1:-1] = [f"Stopped by the {rule[0]} rule: {rule[1]}  "]
        best = self.best_trials()
        if not best:
            return "\n".join(lines + ["No trial has completed yet."])
        if not self.spec.multi_objective:
            lines.append(f"**Best value: {best[0].value:.4f}** (trial {best[0].number})")
            lines.append("")
        if self.final:
            lines += [final_note(self.final), ""]
        complete = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if self.spec.multi_objective:
            ranked = best
        else:
            ranked = sorted(complete, key=lambda t: t.value, reverse=self.spec.directions[0] == "maximize")[:top]
        keys = [p.key for p in self.spec.params]
        header = ["trial"] + self.spec.metrics + keys
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for trial in ranked:
            values = [f"{v:.4f}" for v in trial.values]
            params = [_short(trial.params.get(key, "")) for key in keys]
            lines.append("| " + " | ".join([str(trial.number)] + values + params) + " |")
        return "\n".join(lines)

    # ---- at the end -------------------------------------------------------------------
    def final_report(self) -> StudyOutcome:
        self.refresh()
        self.log_plots()
        self.log_best_model()
        outcome = self.outcome()
        if outcome.stopped_by:
            self.parent.set_tags({"stopped_by": outcome.stopped_by})
        return outcome

    def write_page(self) -> str:
        """The study's report page (core/study/page.py), after everything else the study logs; its path, or ""
        when it could not be made (the study's results stand without it, but not through an outage)."""
        with best_effort("the study's report page was not written"):
            return str(page.write_study_report(self.spec.name, self.parent_run_id))
        return ""

    def outcome(self) -> StudyOutcome:
        """What the study holds now: counts, the best trial (or the Pareto front), epochs trained."""
        counts = self.counts()
        best = self.best_trials()
        self.update_importances()
        rule = stopped_by(self.spec, self.study)
        epochs = sum(int(t.user_attrs.get("epochs", len(t.intermediate_values)))
                     for t in self.study.get_trials(deepcopy=False) if t.state.is_finished())
        head = best[0] if best else None
        return StudyOutcome(
            name=self.spec.name, storage=self.storage, parent_run_id=self.parent_run_id,
            finished=counts["finished"], pruned=counts["pruned"], failed=counts["failed"],
            best_values=list(head.values) if head else None, best_params=dict(head.params) if head else {},
            best_run_id=head.user_attrs.get("mlflow_run_id", "") if head else "",
            best_trial=head.number if head else None, epochs_used=epochs,
            pareto_front=[(t.number, list(t.values)) for t in best] if self.spec.multi_objective else [],
            importances=self.importances, importance_note=self.importance_note,
            stopped_by=rule[0] if rule else "", stopped_detail=rule[1] if rule else "",
            best_test=self.test_score(head), tie_note=self.ties(head), final=self.final)

    def ties(self, head) -> str:
        if self.spec.multi_objective or head is None:
            return ""
        complete = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        return tie_note(complete, head, self.spec.metrics[0])

    def test_score(self, head) -> tuple[str, float] | None:
        """The best trial's test score of the objective's metric (val_acc: its run's summary/test_acc), if it
        logged one (a K-fold trial's are on its fold runs)."""
        metric, run_id = self.spec.metrics[0], head.user_attrs.get("mlflow_run_id", "") if head else ""
        if self.spec.multi_objective or not run_id or not metric.startswith("val_"):
            return None
        name = "test_" + metric.removeprefix("val_")
        value = logged_summary(Run.of(run_id, self.spec.experiment).metrics(), name)
        return None if value is None else (name, value)

    def log_best_model(self) -> None:
        """The best trial's model in MLflow's format, in that trial's run, rebuilt from its logged config and weights.

        Trials log only their weights: a model per trial would cost every trial time and fill the Models
        tab with pruned and poor trials. K-fold trials have a model per fold, none of them the trial's.
        """
        best = self.best_trials()
        if self.spec.multi_objective or not self.spec.base.track.log_model or not best:
            return
        if self.final:  # the final phase ran: its chosen configuration's median-seed run (study.final)
            chosen = self.final["chosen"]
            run_id, model_name = chosen["run_id"], f"{self.spec.name}-final-trial-{chosen['trial']:03d}"
        elif self.spec.folds > 1:
            return
        else:
            run_id, model_name = best[0].user_attrs.get("mlflow_run_id", ""), f"{self.spec.name}-trial-" \
                f"{best[0].number:03d}"
        if not run_id or self.parent.tags().get(BEST_MODEL_TAG) == run_id:
            return
        # the study's results stand without it, but not through an outage
        with best_effort("the best trial's model was not logged in MLflow's format"):
            log_served_model_of(run_id, self.spec.experiment, model_name)
            self.parent.set_tags({BEST_MODEL_TAG: run_id})

    def log_plots(self) -> None:
        """Optuna's plots as HTML pages sharing one plotly.js (core/study/plots.py) and as PNG (matplotlib; not
        where it is unreadable)."""
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
            pages = [self._log_plot(Path(folder), name, kwargs) for name, kwargs in self._plot_calls()]
            if any(pages):
                self.parent.log_artifact(plots.write_plotly(Path(folder)), plots.FOLDER)

    def _plot_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """(plot, its arguments) for the plots this study has something to show in."""
        front = self.spec.multi_objective and len(self.spec.metrics) in (2, 3)
        calls = []
        for name in list(PLOTS) + (["pareto_front"] if front else []):
            kwargs: dict[str, Any] = {}
            if self.spec.multi_objective and name != "pareto_front":
                kwargs["target"], kwargs["target_name"] = (lambda t: t.values[0]), self.spec.metrics[0]
            if name == "intermediate_values" and (self.spec.multi_objective
                                                  or not plots.has_intermediate_values(self.study)):
                continue  # nothing was reported as trials trained
            if name == "param_importances":
                if not self.importances:
                    continue  # too few trials: the note says so
                kwargs["evaluator"] = make_importance_evaluator(self.spec)
            calls.append((name, kwargs))
        return calls

    def _log_plot(self, folder: Path, name: str, kwargs: dict[str, Any]) -> bool:
        """One plot's page (and PNG); False when Optuna could not draw the page."""
        made = False
        with best_effort(f"plot {name} was not made"):  # an outage goes through: never a study with stale plots
            figure = getattr(plotly_plots, f"plot_{name}")(self.study, **kwargs)
            html = folder / f"{name}.html"
            html.write_text(plots.page(figure, f"{self.spec.name}: {name}", self.parent_run_id), encoding="utf-8")
            self.parent.log_artifact(html, plots.FOLDER)
            made = True  # the page needs the shared plotly.min.mjs, whatever becomes of the PNG
            if name not in NO_PNG:
                axes = getattr(png_plots, f"plot_{name}")(self.study, **kwargs)
                png_figure = _figure_of(axes)
                png = folder / f"{name}.png"
                png_figure.savefig(png, dpi=100, bbox_inches="tight")
                plt.close(png_figure)
                self.parent.log_artifact(png, plots.FOLDER)
        return made


def final_note(final: dict) -> str:
    """The final phase's result in one line of the note: the chosen configuration's mean ± std over the fresh
    seeds on validation (and test), and the run that serves it."""
    chosen = final["chosen"]
    row = next(row for row in final["configurations"] if row["rank"] == chosen["rank"])
    return (f"**Final phase:** the best {len(final['configurations'])} configurations on {len(final['seeds'])} fresh "
            f"seeds, ranked by {final['ranked_by']}; chosen trial {chosen['trial']}: {final['metric']} "
            f"{shown(row['val'])}, {final['test_metric']} {shown(row['test'])}; served by run `{chosen['run_id']}` "
            f"({chosen['why']}, seed {chosen['seed']})")


def tie_note(complete: list, best, metric: str) -> str:
    """"3 trials tie at val_acc 0.9861 (one validation sample is 0.35 points)", or "" when the best is alone:
    with a few hundred validation samples equal accuracies are common, and the one shown as best is no better."""
    tied = [t.number for t in complete if t.value == best.value]
    if len(tied) < 2:
        return ""
    note = f"{len(tied)} trials tie at {metric} {best.value:.4f}"
    samples = best.user_attrs.get("val_samples")
    if metric == "val_acc" and samples:
        note += f" (one validation sample is {100 / samples:.2f} points)"
    return f"{note}: trials {', '.join(map(str, tied))}"


def _figure_of(axes):
    first = axes.flat[0] if isinstance(axes, np.ndarray) else axes
    return first.get_figure()


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
