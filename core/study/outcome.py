"""How a trial ended, as one value told to Optuna once: complete (its values), pruned (by whom, after what)
or failed (why). A non-finite loss is a failed trial: the configuration diverged, which says nothing about
how it would have scored, and a pruner must not count it among the trials it compares."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import optuna

log = logging.getLogger(__name__)
State = optuna.trial.TrialState


@dataclass(frozen=True)
class TrialOutcome:
    state: State
    values: tuple[float, ...] = ()
    reason: str = ""  # pruned: by whom and after what; failed: why
    epochs: int = 0  # epochs trained (all folds')

    @classmethod
    def complete(cls, values: list[float], epochs: int) -> TrialOutcome:
        return cls(State.COMPLETE, tuple(values), "", epochs)

    @classmethod
    def pruned(cls, reason: str, epochs: int) -> TrialOutcome:
        return cls(State.PRUNED, (), reason, epochs)

    @classmethod
    def failed(cls, reason: str, epochs: int = 0) -> TrialOutcome:
        return cls(State.FAIL, (), reason[:1000], epochs)

    @property
    def tag(self) -> str:
        """The trial's run's `state` tag."""
        return {State.COMPLETE: "complete", State.PRUNED: "pruned"}.get(self.state, "failed")

    @property
    def run_status(self) -> str:
        return "FAILED" if self.state == State.FAIL else "FINISHED"

    def tell(self, study: optuna.Study, trial: optuna.Trial) -> optuna.trial.FrozenTrial:
        if self.epochs:
            trial.set_user_attr("epochs", self.epochs)
        if self.state == State.PRUNED:
            trial.set_user_attr("prune_reason", self.reason)
        if self.state == State.FAIL:
            trial.set_user_attr("fail_reason", self.reason)
            log.warning("trial %d failed: %s", trial.number, self.reason)
        if self.state != State.COMPLETE:
            return study.tell(trial, state=self.state)
        return study.tell(trial, list(self.values) if len(self.values) > 1 else self.values[0])
