"""Study benchmarks: 2 workers vs 1, pruning vs none, the default study vs scikit-learn, bookkeeping per trial.

Each case runs in its own temporary store (a folder with its own mlruns/).
`python -m benchmarks.study [--quick]`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from benchmarks.table import Row, main_for

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "studies" / "digits_mlp.yaml"


@contextlib.contextmanager
def temporary_store() -> Iterator[Path]:
    """cd into a fresh folder whose mlruns/ holds this case's MLflow and Optuna stores."""
    from core.tracking import mlflow_store

    previous_dir, previous_uri = os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder}/mlruns/mlflow.db"
        try:
            yield Path(folder)
        finally:
            os.chdir(previous_dir)
            if previous_uri is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_uri
            mlflow_store._client_for.cache_clear()


def load(trials: int, overrides: tuple[str, ...] = (), pruner: str | None = None):
    from core.study import load_spec

    spec = load_spec(DEFAULT_SPEC, ("track.visdom=off",) + overrides, trials=trials)
    if pruner is not None:
        spec.pruner = {"name": pruner}
    return spec


def trials_per_minute(study) -> float:
    """The workers' summed rates: each worker's finished trials over the time from its first trial's start
    to its last one's end. Process start-up, which differs between workers, is left out."""
    by_worker: dict[int, list] = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.datetime_complete and trial.state.name in ("COMPLETE", "PRUNED"):
            by_worker.setdefault(trial.user_attrs["pid"], []).append(trial)
    rate = 0.0
    for trials in by_worker.values():
        span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
        rate += len(trials) / span * 60
    return rate


def run_default_study(trials: int, pruner: str | None = None, seed: int = 0):
    """(the study's outcome, its best trial's test accuracy), in a store of its own."""
    from benchmarks.baselines import best_trial_test_accuracy
    from core.study import run_study

    spec = load(trials, pruner=pruner)
    spec.seed = seed
    with temporary_store():
        outcome = run_study(spec)
        return outcome, best_trial_test_accuracy(outcome)


def study_command_rate(trials: int, workers: int, replay: list[dict] | None = None) -> tuple[float, list[dict]]:
    """Trials per minute of `python -m core study` as a user runs it, in a fresh process and store, and the
    parameters its trials ran with, by trial number.

    The pruner is off: which trials a pruner stops depends on how workers interleave. `replay` queues the
    parameters of an earlier run as the study's trials, so both sides train the same configurations (a
    trial's seed comes from its number): the sampler, fed results in another order, would propose others.
    """
    import subprocess
    import sys

    import optuna
    import yaml

    from core.study import DEFAULT_STORAGE
    from core.study.storage import open_storage

    with temporary_store() as folder:
        spec = yaml.safe_load(DEFAULT_SPEC.read_text())
        spec["pruner"] = {"name": "none"}
        (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
        if replay:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            queued = optuna.create_study(study_name=spec["name"], storage=open_storage(DEFAULT_STORAGE),
                                         direction=spec["objective"]["direction"])
            for params in replay:
                queued.enqueue_trial(params)
        subprocess.run([sys.executable, "-m", "core", "study", "spec.yaml", "track.visdom=off", "--trials", str(trials),
                        "--workers", str(workers)], check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        study = optuna.load_study(study_name=spec["name"], storage=open_storage(DEFAULT_STORAGE))
        done = sorted((t for t in study.get_trials(deepcopy=False) if t.state.is_finished()), key=lambda t: t.number)
        return trials_per_minute(study), [t.params for t in done]


def workers_row(trials: int) -> Row:
    one, params = study_command_rate(trials, workers=1)
    two, replayed = study_command_rate(trials, workers=2, replay=params)
    same = "same trials" if replayed == params else "TRIALS DIFFER"
    return Row(f"2 workers vs 1, default study without pruning ({trials} trials, trials/min)", two / one, ">= 1.7",
               two / one >= 1.7 and replayed == params,
               f"1 worker {one:.1f}/min, 2 workers {two:.1f}/min ({same})")


def pruning_rows(pruned: list, trials: int) -> list[Row]:
    """The default (pruned) studies' outcomes, run with study seeds 0 .. seeds-1, against unpruned ones.

    One pair of studies is not enough: on digits one validation sample is a third of a
    percentage point, so which study finds the better trial changes from seed to seed.
    The rows compare the sums of epochs and the means of the best values.
    """
    seeds = len(pruned)
    full = [run_default_study(trials, pruner="none", seed=seed)[0] for seed in range(seeds)]
    epochs_pruned, epochs_full = sum(o.epochs_used for o in pruned), sum(o.epochs_used for o in full)
    best_pruned, best_full = (sum(o.best_values[0] for o in outcomes) / seeds for outcomes in (pruned, full))
    gap = (best_full - best_pruned) * 100
    gaps = [(f.best_values[0] - p.best_values[0]) * 100 for p, f in zip(pruned, full)]
    ratio = epochs_pruned / epochs_full
    return [Row(f"pruning vs none, default study ({trials} trials, {seeds} seeds): epochs used", ratio, "<= 0.5",
                ratio <= 0.5, f"{epochs_pruned} vs {epochs_full} epochs"),
            Row("pruning vs none: best val_acc, percentage points behind (mean over seeds)", gap, "<= 0.5", gap <= 0.5,
                f"pruned {best_pruned:.4f}, unpruned {best_full:.4f}; per seed {', '.join(f'{g:+.2f}' for g in gaps)}")]


def bookkeeping_seconds(sizes: list[int]) -> list[float]:
    """Seconds per trial of Optuna + MLflow bookkeeping, training replaced by a constant result.

    Measured in the worker loop, from one trial's end to the next one's, over the
    last 10 trials when the study reaches each size.
    """
    from unittest import mock

    import optuna

    import core.runs.fit
    from core.study import DEFAULT_STORAGE, run_study
    from core.study.storage import open_storage
    from core.train import FitResult, Stop

    def no_training(prepared, tracker=None, should_stop=None, **options):
        history = [{"train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.5, "val_acc": 0.9, "lr": 0.1}]
        tracker.log_metrics(history[0], step=0)
        return FitResult(history=history, best_epoch=0, stop=Stop(),
                         metrics={"final_val_acc": 0.9, "final_val_loss": 0.5}, model=None, seconds=0.0, steps=1,
                         extra={"parameters": 1.0})

    seconds = []
    with temporary_store(), mock.patch.object(core.runs.fit, "fit", no_training):
        spec = load(sizes[0], pruner="none")
        spec.sampler = {"name": "random"}  # TPE's own cost grows with the trials; we measure ours
        spec.base.track.log_model = False  # these trials train nothing, so there is no model to log or plot
        spec.base.track.figures = False
        for size in sizes:
            spec.trials = size
            run_study(spec)
            study = optuna.load_study(study_name=spec.name, storage=open_storage(DEFAULT_STORAGE))
            ends = sorted(t.datetime_complete for t in study.get_trials(deepcopy=False))[-11:]
            seconds.append((ends[-1] - ends[0]).total_seconds() / (len(ends) - 1))
    return seconds


def bookkeeping_row(sizes: list[int]) -> Row:
    seconds = bookkeeping_seconds(sizes)
    worst = max(seconds)
    return Row(f"study bookkeeping per trial at {'/'.join(map(str, sizes))} trials (worst, ms)", worst * 1000, "< 100",
               worst < 0.1, ", ".join(f"{n}: {s * 1000:.0f} ms" for n, s in zip(sizes, seconds)))


def run(quick: bool = False) -> list[Row]:
    from benchmarks.baselines import baselines_row

    trials, seeds = (12, 2) if quick else (30, 5)
    rows = [workers_row(trials)]
    default = [run_default_study(trials, seed=seed) for seed in range(seeds)]  # (outcome, best trial's test acc)
    rows += pruning_rows([outcome for outcome, _ in default], trials)
    rows.append(baselines_row([accuracy for _, accuracy in default], trials))
    rows.append(bookkeeping_row([10, 100] if quick else [10, 100, 1000]))
    return rows


if __name__ == "__main__":
    main_for(run)
