"""The final phase of a study: its best configurations trained again on seeds the search never used.

A study's best trial is the luckiest of many draws. After the search, the best `top` configurations (distinct
parameters, by the search's value) each train again with `seeds` fresh seeds, as child runs of the study's
parent tagged `final`. Each run keeps a validation part: the configurations are ranked by their mean over seeds
on validation, never on the test part, and the split follows the seed (as in the search, unless the base config
fixes split.seed), so the spread includes data sampling and every configuration sees the same parts for a seed.
The chosen configuration (rank 1) is served by its median-seed run: a typical draw of it, not its luckiest.

Resumable: a run that FINISHED is found under the parent by its name and read back, not trained again.
`final/final.json` on the parent run holds the result (the report page reads it).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

import optuna

from core.config import MAX_SEED, Config
from core.runs import FitHooks, FoldPlan, Run, fit_folds
from core.runs.logged import finished_children
from core.study.space import sample
from core.study.spec import StudySpec, result_key
from core.study.spread import spread

log = logging.getLogger(__name__)

ARTIFACT = "final/final.json"
TAG = "final"  # on each final run: "true"; the parent gets final_chosen_run_id when the phase is done
FIRST_SEED = 1000  # fresh seeds are counted up from 1000 * (study seed + 1) + 1, skipping any a trial used


@dataclass(frozen=True)
class Configuration:
    """One of the best configurations of the search: its trial and the config it trained."""

    trial: optuna.trial.FrozenTrial
    config: Config


def fresh_seeds(spec: StudySpec, study: optuna.Study, count: int) -> list[int]:
    """`count` seeds no trial of the study used (trial seeds derive from trial numbers: study.trial), the same
    on every rerun of the same study."""
    used = {int(t.user_attrs["seed"]) for t in study.get_trials(deepcopy=False) if "seed" in t.user_attrs}
    seeds, candidate = [], FIRST_SEED * (spec.seed + 1)
    while len(seeds) < count:
        candidate = candidate % MAX_SEED + 1
        if candidate not in used:
            seeds.append(candidate)
    return seeds


def best_configurations(spec: StudySpec, study: optuna.Study, top: int) -> list[Configuration]:
    """The best `top` complete trials with distinct parameters (a retried or warm-started trial repeats one)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ranked = sorted(complete, key=lambda t: t.value, reverse=spec.directions[0] == "maximize")
    chosen, seen = [], set()
    for trial in ranked:
        key = json.dumps(trial.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(Configuration(trial, sample(spec.params, trial, spec.base)))
        if len(chosen) == top:
            break
    return chosen


def run_final(spec: StudySpec, study: optuna.Study, parent: Run) -> dict | None:
    """Train what is missing of the final phase under `parent`, then log and return final.json's content
    (None when no trial completed)."""
    top, count = spec.final["top"], spec.final["seeds"]
    configurations = best_configurations(spec, study, top)
    if not configurations:
        return None
    seeds = fresh_seeds(spec, study, count)
    plans = [_plan(spec, parent, configuration, seed) for configuration in configurations for seed in seeds]
    values: dict[str, dict] = {}

    def record(plan: FoldPlan, tracked) -> bool:
        values[plan.place.name] = {"seed": plan.config.seed, "run_id": tracked.run_id,
                                   "val": _finite(tracked.result.metrics.get(result_key(spec.metrics[0]))),
                                   "test": _finite(tracked.result.metrics.get(test_metric(spec)))}
        return True

    done = finished_children(spec.experiment, parent.id)
    left = sum(plan.place.name not in done for plan in plans)
    log.info("final phase: %d configurations x %d fresh seeds, %d runs to train%s", len(configurations), count, left,
             f" ({len(plans) - left} finished before)" if left < len(plans) else "")
    fit_folds(plans, FitHooks(served_model=False), record, reuse=True)
    result = summarize(spec, configurations, seeds, [values[plan.place.name] for plan in plans])
    parent.log_text(json.dumps(result, indent=1), ARTIFACT)
    parent.set_tags({"final_chosen_run_id": result["chosen"]["run_id"], "final_plan": plan_tag(spec)})
    return result


def plan_tag(spec: StudySpec) -> str:
    """What the parent's `final_plan` tag says once the phase is done: a rerun with another plan runs it again."""
    return f"top={spec.final['top']} seeds={spec.final['seeds']}" if spec.final else ""


def test_metric(spec: StudySpec) -> str:
    """The test score of the objective's metric: val_acc -> test_acc."""
    return "test_" + spec.metrics[0].removeprefix("val_").removeprefix("train_")


def _plan(spec: StudySpec, parent: Run, configuration: Configuration, seed: int) -> FoldPlan:
    config = configuration.config.copy()
    config.seed = seed
    number = configuration.trial.number
    name = f"final trial-{number:03d} seed-{seed}"
    tags = {"study": spec.name, TAG: "true", "final_trial": str(number), "seed": str(seed)}
    return FoldPlan(config, parent.child(name, tags, env=spec.name))


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def summarize(spec: StudySpec, configurations: list[Configuration], seeds: list[int], runs: list[dict]) -> dict:
    """final.json: per configuration its runs and the spread of val and test over seeds, ranked by the mean on
    validation; the chosen one's median-seed run."""
    maximize = spec.directions[0] == "maximize"
    rows = []
    for index, configuration in enumerate(configurations):
        own = runs[index * len(seeds):(index + 1) * len(seeds)]
        rows.append({"trial": configuration.trial.number, "params": dict(configuration.trial.params), "runs": own,
                     "val": spread([run["val"] for run in own if run["val"] is not None]),
                     "test": spread([run["test"] for run in own if run["test"] is not None])})
    worst = -math.inf if maximize else math.inf  # a configuration without a value ranks last
    rows.sort(key=lambda row: row["val"]["mean"] if row["val"]["mean"] is not None else worst, reverse=maximize)
    configurations_out = [{"rank": rank, **row} for rank, row in enumerate(rows, start=1)]
    median = median_run(configurations_out[0]["runs"], maximize)
    return {"metric": spec.metrics[0], "test_metric": test_metric(spec), "direction": spec.directions[0],
            "top": spec.final["top"], "seeds": seeds, "ranked_by": f"mean {spec.metrics[0]} over seeds",
            "chosen": {"rank": 1, "trial": configurations_out[0]["trial"], "run_id": median["run_id"],
                       "seed": median["seed"], "why": f"median seed on {spec.metrics[0]}"},
            "configurations": configurations_out}


def median_run(runs: list[dict], maximize: bool) -> dict:
    """The run at the median of the validation values (of the two middle ones for an even count, the worse: not
    the more flattering); ties by seed. Runs without a value are left out."""
    valued = sorted((run for run in runs if run["val"] is not None),
                    key=lambda run: (run["val"] if maximize else -run["val"], run["seed"]))  # worst first
    if not valued:
        return runs[0]
    return valued[(len(valued) - 1) // 2]
