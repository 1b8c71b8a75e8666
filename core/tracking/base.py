"""What the training code talks to instead of MLflow or Visdom.

A `Tracker` is bound to one run by whoever opened it (the train command, a
study trial, a comparison fold). Training code only logs through it, so it
runs and tests without any server.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    def log_params(self, params: dict[str, Any]) -> None:
        """The run's flat config and other inputs."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Facts about the run: versions, device, fingerprints, states."""

    def log_steps(self, key: str, values: Sequence[float], first_step: int) -> None:
        """A series of per-step values; values[i] belongs to step first_step + i."""

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        """Per-epoch (or final) values; `step` is the epoch."""

    def log_file(self, path: Path, folder: str = "") -> None:
        """A file written elsewhere, kept with the run."""

    def log_figure(self, figure: Any, filename: str) -> None:
        """A matplotlib figure, saved as `filename` with the run."""

    def log_text(self, text: str, filename: str) -> None:
        """Text (YAML, CSV, Markdown), saved as `filename` with the run."""

    def close(self) -> None:
        """Send whatever is buffered; the run itself stays open."""


class NullTracker:
    """Logs nothing: for library use and tests that need no store."""

    def log_params(self, params: dict[str, Any]) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_steps(self, key: str, values: Sequence[float], first_step: int) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_file(self, path: Path, folder: str = "") -> None:
        pass

    def log_figure(self, figure: Any, filename: str) -> None:
        pass

    def log_text(self, text: str, filename: str) -> None:
        pass

    def close(self) -> None:
        pass


class CompositeTracker:
    """Fans every call out to several trackers (e.g. MLflow and Visdom)."""

    def __init__(self, *trackers: Tracker):
        self.trackers = [tracker for tracker in trackers if tracker is not None]

    def __getattr__(self, name: str):
        def fan_out(*args: Any, **kwargs: Any) -> None:
            for tracker in self.trackers:
                getattr(tracker, name)(*args, **kwargs)
        return fan_out

    def close(self) -> None:
        """Close every tracker (their sender threads end), then raise the first error (an outage) if any."""
        errors = []
        for tracker in self.trackers:
            try:
                tracker.close()
            except Exception as error:
                errors.append(error)
        if errors:
            raise errors[0]
