"""A group run with a child run per fold: a study's K-fold trial (a fold each) and a comparison's remedy (a
fold each of every repeat). The caller opens the group (`open_run`) and says what each child trains; a group
reopened to go on (a resumed comparison) reuses the folds it finished instead of training them again."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.config import Config
from core.runs.fit import FitHooks, TrackedRun, tracked_fit
from core.runs.logged import finished_children, logged_fit
from core.runs.place import Place
from core.runs.run import Run
from core.train import prepare


@dataclass(frozen=True)
class FoldPlan:
    config: Config  # the fold's config (its split.fold, and seed for a repeat)
    place: Place  # its child run


def fold_plan(group: Run, base_name: str, config: Config, tags: dict[str, str], where: dict[str, int]) -> FoldPlan:
    """The child of `group` that trains `config`, named e.g. `<base_name> repeat-0 fold-2` and tagged with
    `tags` and where it sits (`where`: repeat, fold)."""
    dashed = " ".join(f"{key}-{value}" for key, value in where.items())
    spaced = " ".join(f"{key} {value}" for key, value in where.items())
    return FoldPlan(config, group.child(f"{base_name} {dashed}", {**tags, **{k: str(v) for k, v in where.items()}},
                                        f"{base_name} {spaced}", group.place.live_env))


def fit_folds(plans: Sequence[FoldPlan], hooks: FitHooks, after_fold: Callable[[FoldPlan, TrackedRun], bool],
              reuse: bool = False) -> list[TrackedRun]:
    """Train each plan in order as its own run; `after_fold` sees each one and returns False to stop there
    (a pruned K-fold trial, a diverged fold). `reuse`: a plan whose run (by name) already FINISHED in the group
    is read back from the store instead (`TrackedRun.reused`): a killed comparison's finished folds."""
    finished = finished_children(plans[0].place.experiment, plans[0].place.parent_run_id) if reuse and plans else {}
    done = []
    for plan in plans:
        if plan.place.name in finished:  # its split sizes come from prepare: the same split, nothing trained
            run_id = finished[plan.place.name]
            done.append(TrackedRun(run_id, logged_fit(run_id), prepare(plan.config), reused=True))
        else:
            done.append(tracked_fit(plan.config, plan.place, hooks))
        if not after_fold(plan, done[-1]):
            break
    return done
