"""The names of the built-in models, data sets, optimizers, tasks and metrics, in one place that imports nothing heavy.

Besides these, a model, a data set or a metric can be the user's own, named by
import path (`module:attribute`, see core/user_code.py). A config is checked
against these without importing torch, so a bad value is an
error in a fraction of a second; `core.models` and `core.data` hold the builders
under the same names (a test keeps the two in step).
"""

import re
from typing import NamedTuple

MODELS = ("mlp", "quickstart", "seed_net", "lenet5", "small_cnn", "alexnet_cifar", "vgg_small", "resnet_small",
          "conv1d")
# model.hidden = [] means these fully connected widths (what `python -m core keys` shows as the default)
HIDDEN = {"mlp": [200, 200], "quickstart": [512, 512], "seed_net": [512, 64], "lenet5": [120, 84], "small_cnn": [],
          "alexnet_cifar": [4096, 1024], "vgg_small": [256], "resnet_small": [], "conv1d": [64]}
FULLY_CONNECTED = ("mlp", "quickstart")  # no convolutions: model.channels is not theirs
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "synthetic", "npz", "npy", "image_folder")


class Optimizer(NamedTuple):
    torch_class: str  # its class in torch.optim
    keys: tuple[str, ...]  # the optim.* keys it takes besides lr and weight_decay (the others are unused)


# optim.name's choices: train.make_optimizer builds from this table alone, so a new optimizer is one line here.
OPTIMIZERS = {"sgd": Optimizer("SGD", ("momentum",)), "adam": Optimizer("Adam", ()), "adamw": Optimizer("AdamW", ())}


def optimizers_using(key: str) -> tuple[str, ...]:
    """The optimizers that take optim.<key>: optimizers_using("momentum") -> ("sgd",)."""
    return tuple(name for name, optimizer in OPTIMIZERS.items() if key in optimizer.keys)


# Metrics for track.metrics, computed from scikit-learn on the validation and test predictions (classification).
METRICS = ("macro_f1", "weighted_f1", "balanced_accuracy", "cohen_kappa", "matthews_corrcoef", "log_loss")


class TaskNames(NamedTuple):
    """What a task is called in configs and specs, torch-free (core/tasks.py holds what it does)."""

    losses: tuple[str, ...]  # train.loss's built-in choices; the first is the default
    epoch: tuple[str, ...]  # metrics of each epoch (train_<m>, val_<m>), besides the loss; the first is the main one
    final: tuple[str, ...]  # metrics of the returned model (final_train_<m>, final_val_<m>, test_<m>)
    extra: tuple[str, ...]  # built-in track.metrics it takes
    stratified: bool  # whether splits keep each class's share (class labels) or not (values, label matrices)


# task's choices. A task owns its loss, outputs, metrics and predictions (core/tasks.py); this table names them.
TASKS = {
    "classification": TaskNames(("cross_entropy",), ("acc",), ("acc",), METRICS, True),
    "regression": TaskNames(("mse", "l1", "huber"), ("rmse", "mae"), ("rmse", "mae", "r2"), (), False),
    "multilabel": TaskNames(("bce",), ("micro_f1", "subset_acc"), ("micro_f1", "macro_f1", "map", "subset_acc"), (),
                            False),
}
# `task: auto` is classification that refuses targets which do not look like classes (and says which task to use).
TASK_CHOICES = ("auto", *TASKS)
LOWER_IS_BETTER = ("loss", "rmse", "mae", "log_loss", "parameters", "seconds")


def task_names(task: str) -> TaskNames:
    return TASKS["classification" if task == "auto" else task]


def epoch_keys(task: str) -> tuple[str, ...]:
    """What every epoch of a run of this task has: train_loss, val_loss, then train_ and val_ of each epoch metric."""
    return ("train_loss", "val_loss", *(f"{part}_{metric}" for metric in task_names(task).epoch
                                        for part in ("train", "val")))


def all_losses() -> tuple[str, ...]:
    return tuple(loss for task in TASKS.values() for loss in task.losses)


def main_metric(task: str) -> str:
    """The task's headline metric: acc, rmse, micro_f1 (val_<it> is a study's default objective)."""
    return task_names(task).epoch[0]


def direction(metric: str) -> str:
    """Whether a metric is better higher or lower: val_rmse, test_loss, seconds -> minimize; val_acc -> maximize."""
    bare = re.sub(r"^(final_)?(train_|val_|test_|cv_)?", "", metric)
    return "minimize" if bare in LOWER_IS_BETTER else "maximize"
# Data sets read from files under data.root: the folder each one's files are in.
ON_DISK = {"mnist": "MNIST/raw", "fashion_mnist": "FashionMNIST/raw", "cifar10": "cifar-10-batches-py"}

# The MLflow metrics of a training run are in three groups: per-epoch values (epoch/val_acc), per-step values
# (step/train_loss) and the summary (summary/test_acc: final_*, test_*, best_epoch, epochs_run, steps_run and the
# final/test values of track.metrics). MLflow 3's chart view makes a section of each prefix (the part of a key
# before "/"), sorted by name, and puts the keys without one last: so every key has one, and epoch < step <
# summary shows the curves first. In Python (FitResult, the trainer, Visdom) the names stay plain.
EPOCH_PREFIX = "epoch/"
STEP_PREFIX = "step/"
SUMMARY_PREFIX = "summary/"


def epoch_key(name: str) -> str:
    """The MLflow metric key of a per-epoch value: val_acc -> epoch/val_acc."""
    return EPOCH_PREFIX + name


def step_key(name: str) -> str:
    """The MLflow metric key of a per-step value: train_loss_step -> step/train_loss."""
    return STEP_PREFIX + name.removesuffix("_step")


def summary_key(name: str) -> str:
    """The MLflow metric key of a summary value: test_acc -> summary/test_acc."""
    return SUMMARY_PREFIX + name


def logged_summary(metrics: dict[str, float], name: str) -> float | None:
    """A run's logged summary value (`summary/<name>`), or `<name>` for runs logged before the prefix; None if
    neither is there."""
    value = metrics.get(summary_key(name))
    return metrics.get(name) if value is None else value


def safe_name(name: str) -> str:
    """A user-given name as one safe path component (never `..`, never a slash)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"
    return cleaned[:100]
