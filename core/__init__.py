"""An experiment-tracking research scaffold on PyTorch, MLflow, Optuna and Visdom.

    from core import Config, fit
    result = fit(Config().apply({"model.name": "mlp", "train.epochs": 5}))
"""

from core.config import Config, load_config
from core.errors import ConfigError, DataError, UserError
from core.train import FitResult, fit

__all__ = ["Config", "ConfigError", "DataError", "FitResult", "UserError", "fit", "load_config"]
