"""The Tracker protocol and its sinks (MLflow for the record, Visdom for the live view)."""

from core.tracking.base import CompositeTracker, NullTracker, Tracker

__all__ = ["CompositeTracker", "NullTracker", "Tracker"]
