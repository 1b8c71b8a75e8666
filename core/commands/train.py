"""`python -m core train [SPEC] [key=value ...]`: train once and record one MLflow run.

`train --resume RUN_ID` goes on from a killed run's checkpoint (train.checkpoint=true) in a new run.
"""

from __future__ import annotations

import argparse

from core import signals
from core.config import load_config
from core.errors import UserError

HELP = "train one model and record it as one MLflow run"
OVERRIDES = "items"  # key=value items after the options join these
EXAMPLES = ["python -m core train train.epochs=5",
            "python -m core train model.name=lenet5 data.name=mnist data.root=data optim.name=adam optim.lr=1e-3",
            "python -m core train studies/digits_mlp.yaml seed=1   (a spec's config: section, then overrides)"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("items", nargs="*", metavar="[SPEC] key=value",
                        help="an optional YAML spec, then config overrides such as optim.lr=0.01")
    parser.add_argument("--resume", metavar="RUN_ID",
                        help="go on from the last checkpoint of a run that was killed (its own config, a new run)")


def print_visdom_url(track, env: str) -> None:
    """The live view's page, env included, once at start (when a server answers)."""
    from core import servers
    from core.tracking.visdom_sink import env_url

    if track.visdom != "off" and servers.answers(track.visdom_url):
        print(f"Visdom (live): {env_url(track.visdom_url, env)}", flush=True)


def split_spec(items: list[str]) -> tuple[str | None, list[str]]:
    """A first item without '=' is the spec file; the rest are overrides."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return None, items


def main(args: argparse.Namespace) -> int:
    if args.resume:
        return resume(args)
    spec, overrides = split_spec(args.items)
    config = load_config(spec, overrides)
    signals.install_signal_handlers()
    # torch loads only once the config is valid: a bad key fails fast
    from core.runs import FitHooks, tracked_fit
    from core.runs.run import sweep_stale_runs
    from core.train import prepare

    prepared = prepare(config)  # bad data or model: an error before anything is written
    sweep_stale_runs()
    print_visdom_url(config.track, config.track.experiment)
    tracked = tracked_fit(prepared, hooks=FitHooks(progress=True))
    report(tracked)
    return 0


def resume(args: argparse.Namespace) -> int:
    """The run's own config from its checkpoint; a bad run id or no checkpoint is one line before any run."""
    if args.items:
        raise UserError("train --resume RUN_ID takes no spec or overrides: the run goes on with its own config")
    signals.install_signal_handlers()
    from core import resume as resuming
    from core.device import resume_device
    from core.runs import FitHooks, Place, tracked_fit
    from core.train import prepare

    found = resuming.find(args.resume)
    config = found.config
    config.device = resume_device(config.device, found.state)  # device=auto: where the checkpoint was made
    prepared = prepare(config)
    if prepared.data.fingerprint != found.state.get("data_fingerprint"):
        raise UserError(f"run {found.run_id} was trained on other data (fingerprint "
                        f"{found.state.get('data_fingerprint')}, now {prepared.data.fingerprint}); cannot resume")
    print(f"resuming run {found.run_id} at epoch {found.first_epoch} of {config.train.epochs}")
    report(tracked_fit(prepared, Place(found.experiment, found.run_name), FitHooks(progress=True), found))
    return 0


def report(tracked) -> None:
    from core.tracking import mlflow_store

    result, metrics = tracked.result, tracked.result.metrics
    print(f"run {tracked.run_id} ({result.stop.reason} after {result.epochs_run} epochs, {result.seconds:.1f} s)")
    if metrics:
        main = tracked.prepared.task.names.epoch[0]  # the task's: acc, rmse, micro_f1
        print(f"  validation {main} {metrics[f'final_val_{main}']:.4f}   test {main} {metrics[f'test_{main}']:.4f}")
    if result.stop.detail:
        print(f"  {result.stop.detail}")
    print(f"  store: {mlflow_store.tracking_uri()}")
