"""Where a run sits: its experiment, name, parent, tags and live-view label, as one value."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Tags that say where a run sits (a study's trial, a fold, a comparison's remedy and repeat), logged as params too:
# MLflow's charts take params (not tags) as axes and group keys.
PLACE_KEYS = ("trial_number", "fold", "remedy", "repeat")


@dataclass(frozen=True)
class Place:
    experiment: str
    name: str
    parent_run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    live_label: str = ""  # the run's line in Visdom ("" = its name)
    live_env: str = ""  # the Visdom environment ("" = the experiment)
    reopen: str = ""  # a run id to go on in (a resumed study's parent, a resumed comparison's runs) if it exists

    @property
    def label(self) -> str:
        return self.live_label or self.name

    @property
    def env(self) -> str:
        return self.live_env or self.experiment

    def with_tags(self, tags: dict[str, str]) -> Place:
        return replace(self, tags={**self.tags, **tags})

    def place_params(self) -> dict[str, str]:
        """The PLACE_KEYS among the tags: logged as params too."""
        return {key: self.tags[key] for key in PLACE_KEYS if key in self.tags}
