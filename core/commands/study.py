"""`python -m core study SPEC [key=value ...]`: an Optuna study, every trial an MLflow run."""

from __future__ import annotations

import argparse
import shlex

from core import signals
from core.commands.train import print_visdom_url
from core.errors import UserError
from core.study import default_storage

HELP = "run (or resume) an Optuna hyperparameter study; every trial is an MLflow run"
OVERRIDES = "overrides"  # key=value items after the options join these
EXAMPLES = ["python -m core study studies/digits_mlp.yaml --trials 10 --workers 2 train.epochs=5",
            "python -m core study studies/digits_mlp.yaml --name digits-b --warm-start digits_mlp --final-top 3 "
            "--final-seeds 5",
            "python -m core study studies/digits_mlp.yaml --outer-folds 3 --trials 10"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC", help="a study spec (studies/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="overrides of the spec's base config, before or after the options")
    add_study_options(parser)
    parser.add_argument("--warm-start", metavar="STUDY_OR_RUN_ID",
                        help="queue first the best configurations of another study in the same storage, "
                             "or the params of an MLflow run (only the keys of this study's space)")
    parser.add_argument("--warm-start-top", type=int, default=5, metavar="K",
                        help="with --warm-start STUDY: how many of its best complete trials (default 5)")
    parser.add_argument("--enqueue", action="append", default=[], metavar="key=value,...",
                        help="queue this configuration first (repeatable)")
    parser.add_argument("--create-only", action="store_true",
                        help="make the study and its parent run in the storage and exit, running no trial (what "
                             "`launch` does before workers start elsewhere; nothing happens to a study that exists)")
    parser.add_argument("--final-top", type=int, metavar="K",
                        help="after the search, train the best K configurations again on fresh seeds (spec: final.top)")
    parser.add_argument("--final-seeds", type=int, metavar="N",
                        help="the fresh seeds each of them trains with (spec: final.seeds; at least 2)")
    parser.add_argument("--outer-folds", type=int, metavar="F",
                        help="a nested estimate: the whole study (search and selection) in each of F outer folds of "
                             "the training part, each fold's held-out part scoring what its study selected")


def add_study_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trials", type=int, help="finish this many trials in the study (default: the spec's budget)")
    parser.add_argument("--timeout", type=float, help="start no new trial after this many seconds")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage: a journal file, sqlite:///..., or postgresql://... (default: "
                             "$CORE_STUDY_STORAGE, else optuna.journal in the nearest mlruns/ from here up)")
    parser.add_argument("--name", help="study name (default: the spec's name)")
    parser.add_argument("--gpus", type=gpu_list, metavar="0,1,...",
                        help="with --workers: the GPUs to give the workers, round robin (default: every visible one); "
                             "numbers as this process sees them (cuda:0, cuda:1, ...), also under CUDA_VISIBLE_DEVICES")


def main(args: argparse.Namespace) -> int:
    spec_path, overrides = args.spec, args.overrides
    args.storage = args.storage or default_storage()
    if "=" in spec_path:
        raise UserError("give a study spec first, e.g. python -m core study studies/digits_mlp.yaml")
    from core.study.runner import run_study  # Optuna and torch load here, not for --help or a usage error
    from core.study.spec import load_spec
    from core.study.warm import plan

    spec = load_spec(spec_path, overrides, name=args.name, trials=args.trials, timeout=args.timeout,
                     final={"top": args.final_top, "seeds": args.final_seeds})
    if args.outer_folds is not None:
        return _nested(spec, args)
    warm_starts = plan(spec, args.storage, args.warm_start, args.warm_start_top, args.enqueue)
    signals.install_signal_handlers()
    if args.create_only:
        from core.study.runner import create_for_workers
        from core.study.storage import as_logged

        parent = create_for_workers(spec, args.storage)
        print(f"study {spec.name} is in {as_logged(args.storage)} (parent run {parent}); its workers: the same "
              "command without --create-only")
        return 0
    print_visdom_url(spec.base.track, spec.name)
    outcome = run_study(spec, storage=args.storage, workers=args.workers, progress=True, gpus=args.gpus,
                        warm_starts=warm_starts)
    print_outcome(outcome, spec.metrics, spec.base.track.visdom_url)
    return 1 if outcome.interrupted else 0


def _nested(spec, args: argparse.Namespace) -> int:
    from core.study.nested import check_nested, run_nested

    check_nested(spec, args.outer_folds)
    if args.warm_start or args.enqueue:
        raise UserError("--outer-folds runs a fresh study in each outer fold: --warm-start and --enqueue would "
                        "bring in configurations chosen on data the outer folds hold out")
    signals.install_signal_handlers()
    outcome = run_nested(spec, args.outer_folds, storage=args.storage, workers=args.workers, gpus=args.gpus)
    print_nested(outcome)
    return 1 if outcome.interrupted else 0


def print_nested(outcome) -> None:
    from core.study.spread import shown
    from core.study.storage import as_logged

    result = outcome.result
    print(f"nested estimate of study {outcome.name}: {result['outer_folds']} outer folds, {outcome.trials} trials "
          f"each, {result['metric']} selected ({result['direction']})")
    for fold in result["folds"]:
        outer = "no value" if fold["outer"] is None else f"{fold['outer']:.4f}"
        inner = "none" if fold["inner_best"] is None else f"{fold['inner_best']:.4f}"
        print(f"  outer fold {fold['fold']}: trial {fold['selected_trial']} selected ({result['metric']}={inner}), "
              f"{result['outer_metric']} on the held-out part {outer}  [study {fold['study']}]")
    print(f"  estimate of \"run this study and take its best\": {result['outer_metric']} {shown(result['outer'])}, "
          f"95% t-interval")
    print(f"  nested estimate's parent run: {outcome.parent_run_id}")
    print(f"  Optuna storage:               {as_logged(outcome.storage)}")
    if outcome.report_page:
        print(f"  report page:                  {outcome.report_page}  "
              f"(python -m core report {shlex.quote(outcome.name)} --open)")


def print_final(final: dict) -> None:
    """The final phase: each configuration's spread over the fresh seeds, and the one chosen and served."""
    from core.study.spread import shown

    print(f"  final phase: the best {len(final['configurations'])} configurations on {len(final['seeds'])} fresh "
          f"seeds ({', '.join(map(str, final['seeds']))}), ranked by {final['ranked_by']}")
    for row in final["configurations"]:
        print(f"    {row['rank']}. trial {row['trial']}: {final['metric']} {shown(row['val'])}")
        print(f"       {final['test_metric']} {shown(row['test'])}")
    chosen = final["chosen"]
    print(f"  chosen: trial {chosen['trial']}; served: its {chosen['why']} (seed {chosen['seed']}), "
          f"run {chosen['run_id']}")


def gpu_list(text: str) -> list[str]:
    """`0,1,3` -> ["0", "1", "3"]: GPU indices (or UUIDs) as CUDA_VISIBLE_DEVICES takes them."""
    gpus = [gpu.strip() for gpu in text.split(",") if gpu.strip()]
    if not gpus or any(not (gpu.isdigit() or gpu.startswith(("GPU-", "MIG-"))) for gpu in gpus):
        raise argparse.ArgumentTypeError(f"--gpus {text!r}: give GPU numbers separated by commas, e.g. 0,1")
    return gpus


def print_outcome(outcome, metrics: list[str], visdom_url: str) -> None:
    from core.study.storage import as_logged

    if outcome.already_done and outcome.stopped_by:
        print(f"study {outcome.name} was stopped by its {outcome.stopped_by} rule ({outcome.stopped_detail}): "
              "nothing was run.")
        print("  to go on: change budget.target / budget.patience in the spec; to start another: --name NEW_NAME")
        print("  its results so far:")
    elif outcome.already_done:
        finished = outcome.finished + outcome.pruned
        print(f"study {outcome.name} already has {finished} finished trials, as many as asked for: nothing was run.")
        print(f"  to extend it: --trials {finished + 10} (or any larger number); to start another: --name NEW_NAME")
        print("  its results so far:")
    print(f"study {outcome.name}: {outcome.finished} complete, {outcome.pruned} pruned, {outcome.failed} failed "
          f"({outcome.epochs_used} epochs trained in all)")
    if outcome.best_values is None:
        print("  no trial completed")
    elif outcome.pareto_front:
        print_front(outcome.pareto_front, metrics)
    else:
        values = ", ".join(f"{metric}={value:.4f}" for metric, value in zip(metrics, outcome.best_values))
        if outcome.best_test:  # what the validation value does not say: how the model does on unseen data
            values += f" ({outcome.best_test[0]}={outcome.best_test[1]:.4f}, as logged in its run's summary/)"
        print(f"  best: trial {outcome.best_trial}, {values}")
        if outcome.tie_note:
            print(f"  {outcome.tie_note}")
        for key, value in outcome.best_params.items():
            print(f"    {key} = {value}")
        print(f"  best trial's MLflow run: {outcome.best_run_id}")
    print_importances(outcome)
    if outcome.final:
        print_final(outcome.final)
    if outcome.stopped_by and not outcome.already_done:
        print(f"  stopped by the {outcome.stopped_by} rule: {outcome.stopped_detail}")
    print(f"  study's parent run:      {outcome.parent_run_id}")
    print(f"  Optuna storage:          {as_logged(outcome.storage)}")
    if outcome.report_page:
        again = f"python -m core report {shlex.quote(outcome.name)} --open"
        print(f"  report page:             {outcome.report_page}  ({again})")
    print("  browse:  python -m core ui        (or: make ui)")
    print(f"  live:    {visdom_hint(outcome.name, visdom_url)}")


def print_importances(outcome) -> None:
    if not outcome.importances:
        print(f"  parameter importance: {outcome.importance_note}")
        return
    top = list(outcome.importances.items())[:3]
    print("  most important: " + ", ".join(f"{key} ({value:.2f})" for key, value in top)
          + "    (all: the parent run's importance/* metrics)")
    if outcome.importance_note:
        print(f"                  {outcome.importance_note}")


def print_front(front: list[tuple[int, list[float]]], metrics: list[str]) -> None:
    """A multi-objective study has no one best trial: the size of its Pareto front and the trial best at each."""
    print(f"  Pareto front: {len(front)} trials (all in the parent run's pareto_front.csv)")
    for index, metric in enumerate(metrics):
        ends = sorted(front, key=lambda item: item[1][index])
        for label, (number, values) in (("lowest", ends[0]), ("highest", ends[-1])):
            shown = ", ".join(f"{m}={v:.4g}" for m, v in zip(metrics, values))
            print(f"    {label} {metric}: trial {number} ({shown})")


def visdom_hint(env: str, url: str) -> str:
    """The page of this study on the Visdom server its config names (track.visdom_url) when that one answers,
    or how to start one (never a command the taken port would fail)."""
    from core import servers
    from core.tracking.visdom_sink import env_url

    if servers.answers(url):
        return env_url(url, env)
    return "python -m core visdom    (or: make visdom), then rerun to watch"
