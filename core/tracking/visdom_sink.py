"""`VisdomTracker`: the live view of per-step loss and per-epoch metrics.

One Visdom env per study or experiment, one window per metric, one line per
run (its legend a label like `trial-007 mlp lr=3.1e-3`), and a window for a study's
best value so far. Points go through a bounded queue to a background thread
that sends them in batches, at most a few requests a second; a server that is
down or dies costs one warning, never the run.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from core import servers
from core.errors import UserError
from core.names import safe_name
from core.tracking.background import BackgroundSender
from core.tracking.base import NullTracker

log = logging.getLogger(__name__)

LIVE_METRICS = ("train_loss", "val_loss", "train_acc", "val_acc", "lr")
TITLES = {"train_loss_step": "train loss per step", "train_loss": "train loss per epoch",
          "val_loss": "validation loss per epoch", "train_acc": "train accuracy per epoch",
          "val_acc": "validation accuracy per epoch", "lr": "learning rate", "best_value": "best value so far"}


def title(window: str) -> str:
    """A window's title: val_rmse -> "validation rmse per epoch"."""
    part, _, metric = window.partition("_")
    return TITLES.get(window) or f"{ {'train': 'train', 'val': 'validation'}.get(part, part)} {metric} per epoch"
SEND_INTERVAL = 1.0  # seconds points may wait: about one request a second per window
MAX_QUEUED = 50_000


class VisdomTracker(NullTracker):
    """Only metrics go to the live view; params, tags, files and models are the record's (MLflow)."""

    def __init__(self, client: Any, env: str, label: str, metrics: Sequence[str] = LIVE_METRICS):
        self.client, self.env, self.label, self.metrics = client, env, label, tuple(metrics)
        self._windows: set[str] = set()
        self._sender = BackgroundSender(self._send, name=f"visdom env {env}", max_items=MAX_QUEUED,
                                        min_interval=SEND_INTERVAL)

    @property
    def dropped(self) -> int:
        return self._sender.dropped

    # ---- what training sends --------------------------------------------------------
    def log_steps(self, key: str, values: Sequence[float], first_step: int) -> None:
        self._sender.put(*((key, self.label, first_step + i, float(v)) for i, v in enumerate(values)))

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._sender.put(*((k, self.label, step, float(v)) for k, v in metrics.items() if k in self.metrics))

    def log_best(self, trial_number: int, value: float) -> None:
        """A study's best value after `trial_number`, in its own window."""
        self._sender.put(("best_value", "best", trial_number, float(value)))

    def close(self) -> None:
        self._sender.close(timeout=10)

    # ---- the background thread ----------------------------------------------------------
    def _send(self, points: list[tuple[str, str, int, float]]) -> None:
        """One request per (window, line), with every queued point of it."""
        import numpy as np

        series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
        for window, line, step, value in points:
            series[(window, line)].append((step, value))
        for (window, line), pairs in series.items():
            steps, values = zip(*pairs)
            exists = window in self._windows or self.client.win_exists(window, env=self.env)
            self.client.line(Y=np.asarray(values), X=np.asarray(steps), win=window, env=self.env, name=line,
                             update="append" if exists else None,
                             opts={"title": title(window), "showlegend": True,
                                   "xlabel": "trial" if window == "best_value" else
                                   ("step" if window.endswith("_step") else "epoch")})
            self._windows.add(window)


def env_url(url: str, env: str) -> str:
    """The page of one env, e.g. http://127.0.0.1:8097/env/digits_mlp."""
    return f"{url.rstrip('/')}/env/{safe_name(env)}"


def make_visdom_tracker(mode: str, url: str, env: str, label: str,
                        metrics: Sequence[str] = LIVE_METRICS) -> VisdomTracker | None:
    """A tracker for `track.visdom`: off -> None; auto -> one when a server answers; on -> one, or an error."""
    if mode == "off":
        return None
    if not servers.answers(url):
        if mode == "on":
            raise UserError(f"track.visdom=on but no Visdom server answers at {url}: "
                            f"start one with python -m core visdom")
        return None
    from visdom import Visdom

    logging.getLogger("visdom").setLevel(logging.ERROR)
    client = Visdom(server=url.rsplit(":", 1)[0], port=int(url.rsplit(":", 1)[1].split("/")[0]),
                    raise_exceptions=True, use_incoming_socket=False)
    return VisdomTracker(client, safe_name(env), label, metrics)
