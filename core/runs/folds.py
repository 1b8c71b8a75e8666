"""A group run with a child run per fold: a study's K-fold trial (a fold each) and a comparison's remedy (a
fold each of every repeat). The caller opens the group (`open_run`) and says what each child trains."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.config import Config
from core.runs.fit import FitHooks, TrackedRun, tracked_fit
from core.runs.place import Place
from core.runs.run import Run


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


def fit_folds(plans: Sequence[FoldPlan], hooks: FitHooks,
              after_fold: Callable[[FoldPlan, TrackedRun], bool]) -> list[TrackedRun]:
    """Train each plan in order as its own run; `after_fold` sees each one and returns False to stop there
    (a pruned K-fold trial, a diverged fold)."""
    done = []
    for plan in plans:
        done.append(tracked_fit(plan.config, plan.place, hooks))
        if not after_fold(plan, done[-1]):
            break
    return done
