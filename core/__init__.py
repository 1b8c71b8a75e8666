"""An experiment-tracking research scaffold on PyTorch, MLflow, Optuna and Visdom.

    from core import Config, fit, tracked_fit
    result = fit(Config().apply({"model.name": "mlp", "train.epochs": 5}))    # trains only
    run = tracked_fit(Config().apply({"model.name": "mlp", "train.epochs": 5}))  # and records one MLflow run
"""

import os

# cuBLAS reads this once, at its first call in the process: set before torch is imported, always, so a
# deterministic fit (train.deterministic) works after any earlier CUDA matmul. A user's own value is kept.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from core.config import Config  # noqa: E402, load_config
from core.errors import ConfigError, DataError, UserError  # noqa: E402


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
