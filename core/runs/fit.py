"""`tracked_fit`: one training run, checked, opened, trained and recorded (MLflow durable, Visdom live)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from core import signals
from core.config import Config
from core.resume import Resume, checkpoint_file, remove_checkpoints
from core.runs import record
from core.runs.logged import LoggedFit
from core.runs.place import Place
from core.runs.run import Run, open_run
from core.tracking import CompositeTracker
from core.tracking.mlflow_sink import MLflowTracker
from core.tracking.visdom_sink import VisdomTracker, make_visdom_tracker
from core.train import FitResult, Prepared, ShouldStop, fit, prepare, run_label


@dataclass(frozen=True)
class FitHooks:
    """What a caller adds to a fit: a stopping rule asked after each epoch (a pruner), a progress bar, and
    whether the model is logged in MLflow's format (a study logs only its best trial's, at the end)."""

    should_stop: ShouldStop | None = None
    progress: bool = False
    served_model: bool = True


@dataclass
class TrackedRun:
    run_id: str
    result: FitResult | LoggedFit  # LoggedFit: a finished run read back, not trained again (runs.folds)
    prepared: Prepared
    reused: bool = False


def tracked_fit(what: Config | Prepared, place: Place | None = None, hooks: FitHooks | None = None,
                resume: Resume | None = None) -> TrackedRun:
    """Check the config (data, split, model: one line, before any run exists; or take it prepared), then open
    a run at `place` (default: the config's experiment, named after the config) and train into it.

    `resume`: go on from another run's checkpoint, in a new run tagged with where it came from (core/resume.py).
    """
    prepared = what if isinstance(what, Prepared) else prepare(what)
    config = prepared.config
    place = place or Place(config.track.experiment, run_label(config))
    with open_run(place.with_tags(resume.tags()) if resume else place) as run:
        result = fit_in(run, prepared, hooks, resume)
    return TrackedRun(run.id, result, prepared)


def fit_in(run: Run, prepared: Prepared, hooks: FitHooks | None = None, resume: Resume | None = None) -> FitResult:
    """Train `prepared` into the open `run`: its inputs first, values as they come, its outcome last. Once the
    run ends FINISHED its checkpoints (and those of the runs it resumed from) are removed; a killed or failed
    run keeps its own, to be resumed."""
    hooks, config = hooks or FitHooks(), prepared.config
    with contextlib.ExitStack() as stack:
        live = _live_view(config, run)  # may raise (track.visdom=on, no server): before any sender thread starts
        if live is not None:
            stack.callback(live.close)
        writer = stack.enter_context(contextlib.closing(MLflowTracker(run.id, run.experiment)))
        stack.enter_context(record.system_metrics(run.id, config.track.system_metrics))
        record.log_inputs(writer, prepared, run.place)
        result = fit(prepared, CompositeTracker(record.CurveKeys(writer), live), _asking(hooks.should_stop),
                     progress=hooks.progress, resume_from=resume.state if resume else None,
                     checkpoint_path=checkpoint_file(run.id) if config.train.checkpoint else None)
        record.log_outcome(writer, prepared, result, run.place.name if hooks.served_model else "")
    run.when_finished(lambda: remove_checkpoints(run.id, resume))
    return result


def _asking(should_stop: ShouldStop | None) -> ShouldStop:
    """The caller's stopping rule, after the warning signal of a scheduler (signals.stop_if_warned): asked once
    the epoch's checkpoint is saved, so a preempted run resumes from the epoch it finished."""
    def ask(epoch: int, metrics: dict[str, float]) -> str:
        signals.stop_if_warned()
        return should_stop(epoch, metrics) if should_stop is not None else ""
    return ask


def _live_view(config: Config, run: Run) -> VisdomTracker | None:
    """Visdom's tracker of this run: each run its own line (the label ends with its run id, so a rerun of the
    same config does not continue the last one's line)."""
    if config.track.visdom == "off":
        return None
    return make_visdom_tracker(config.track.visdom, config.track.visdom_url, run.place.env,
                               f"{run.place.label} [{run.id[:6]}]", record.live_metrics(config))
