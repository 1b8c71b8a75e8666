"""An experiment-tracking research scaffold on PyTorch, MLflow, Optuna and Visdom.

    from core import Config, fit, tracked_fit
    result = fit(Config().apply({"model.name": "mlp", "train.epochs": 5}))    # trains only
    run = tracked_fit(Config().apply({"model.name": "mlp", "train.epochs": 5}))  # and records one MLflow run
"""

from core.config import Config, load_config
from core.errors import ConfigError, DataError, UserError


def __getattr__(name: str):
    # The trainer (and torch) load on first use, so light commands start fast.
    if name in ("fit", "FitResult"):
        from core import train

        return getattr(train, name)
    if name == "tracked_fit":
        from core.runs import tracked_fit

        return tracked_fit
    raise AttributeError(f"module 'core' has no attribute {name!r}")


__all__ = ["Config", "ConfigError", "DataError", "FitResult", "UserError", "fit", "load_config", "tracked_fit"]
