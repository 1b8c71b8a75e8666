"""The trainer: `train_one_epoch`, `evaluate` and `fit(config, tracker) -> FitResult`.

Data -> loop -> result. The whole data set sits on the training device; a batch
is an index slice of a permutation made on the device. Per-step losses stay on
the device and reach the host once per `track.flush_every` steps, so there is no
`.item()` per step. Training never imports mlflow, optuna, visdom or the figure
module: it streams per-step and per-epoch values to a `Tracker`, asks a
`should_stop` callback (pruning) once per epoch, and returns what it trained.
Recording a run (params, tags, summary metrics, figures, the model) is the
job of `core.runs`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from core import checkpoint, names, tasks, user_code
from core import metrics as run_metrics
from core.config import Config, SplitConfig
from core.data import Dataset, channel_stats, load_dataset
from core.device import Compiler, rng_states, set_rng_states
from core.errors import ConfigError, DataError, UserError
from core.models import build_model, check_deterministic, check_forward, count_parameters, forward_flops
from core.regularizers import EarlyStopping, L1Penalty, parameter_groups
from core.splits import make_split, outer_split
from core.streaming import OnDevice, Part, Streamed, loader_workers
from core.tasks import Loss, StepContext, Task
from core.threads import Threads, apply_threads
from core.tracking.base import NullTracker, Tracker

EVAL_BATCH = 1024  # samples per forward pass when evaluating: no gradients, so larger than training's
# The user's own training step (train.step): (model, inputs, targets, context) -> the batch's loss.
Step = Callable[[nn.Module, torch.Tensor, torch.Tensor, StepContext], torch.Tensor]
# Asked after each epoch (epoch, its metrics): why to stop now (e.g. "pruned by the median pruner after epoch
# 3"), or "" to go on. A caller's stop ends the fit as `pruned`.
ShouldStop = Callable[[int, dict[str, float]], str]


@dataclass(frozen=True)
class Stop:
    """Why a fit ended, as one value: completed, early_stopping, pruned (a caller's `should_stop`: detail says
    whose and when) or non_finite (detail says where the loss went non-finite)."""

    reason: str = "completed"
    detail: str = ""


class NonFiniteLoss(Exception):
    """Raised by the per-step loss watch and caught once, in `fit`, which ends as Stop("non_finite")."""


@dataclass(kw_only=True)
class FitResult:
    history: list[dict[str, float]]  # one dict of metrics per epoch run
    best_epoch: int  # epoch (from 0) with the lowest validation loss
    stop: Stop
    metrics: dict[str, float]  # final: best-epoch validation, train (eval mode) and test metrics
    model: nn.Module
    seconds: float
    steps: int
    first_epoch: int = 0  # > 0 when resumed from a checkpoint: the first epoch this fit trained
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        return len(self.history)


class Normalizer:
    """Turns a batch of stored samples (uint8 images or float signals) into normalised floats."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, is_image: bool, channels_last: bool):
        # (x / 255 - mean) / std as x * scale + shift, in place on a float copy
        # (on 2 cores ~3x faster than one addcmul, which makes a third tensor)
        self.scale = 1 / (std * 255) if is_image else 1 / std
        self.shift = -mean / std
        self.channels_last = channels_last

    @property
    def device(self) -> torch.device:
        """The device it normalises on: the training device."""
        return self.shift.device

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # one float copy in the model's memory format (in-place ops keep it); copy=True even for float input: x
        # may be a view of the stored data (evaluate slices it)
        layout = {"memory_format": torch.channels_last} if self.channels_last and x.dim() == 4 else {}
        return x.to(torch.float32, copy=True, **layout).mul_(self.scale).add_(self.shift)


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but no CUDA device is available; use device=auto or device=cpu")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if torch.are_deterministic_algorithms_enabled() != deterministic:
        torch.use_deterministic_algorithms(deterministic)  # imports torch's compiler stack: seconds, so only on change
    torch.backends.cudnn.benchmark = not deterministic


def shift_images(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translations by up to `max_shift` pixels, one per image, zeros shifted in; batched on the device."""
    if max_shift == 0 or x.dim() != 4:
        return x
    padded = nn.functional.pad(x, (max_shift,) * 4)
    rows, cols = _offsets(x, 2 * max_shift, generator)
    return _pick(padded, rows, cols)


def flip_images(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left to right with probability 1/2; batched on the device."""
    if x.dim() != 4:
        return x
    flip = torch.rand(len(x), device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def crop_images(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """A random crop of each image, at its own size, from the image padded by `padding` pixels of reflection
    (torchvision's RandomCrop(size, padding, padding_mode="reflect")); batched on the device, any dtype."""
    if padding == 0 or x.dim() != 4:
        return x
    rows, cols = _offsets(x, 2 * padding, generator)
    reflect = lambda index, size: torch.where(index >= size, 2 * (size - 1) - index, index)  # noqa: E731
    return _pick(x, reflect((rows - padding).abs(), x.shape[2]), reflect((cols - padding).abs(), x.shape[3]))


def _offsets(x: torch.Tensor, most: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the rows (n, h) and columns (n, w) of a window moved by 0..most pixels down and right."""
    n, _, h, w = x.shape
    dy = torch.randint(0, most + 1, (n, 1), device=x.device, generator=generator)
    dx = torch.randint(0, most + 1, (n, 1), device=x.device, generator=generator)
    return torch.arange(h, device=x.device) + dy, torch.arange(w, device=x.device) + dx


def _pick(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """x's pixels at each image's rows and columns: one gather for the whole batch."""
    batch = torch.arange(len(x), device=x.device)[:, None, None]
    return x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def augment_images(x: torch.Tensor, augment: tuple[str, ...], shift: int, crop_padding: int,
                   generator: torch.Generator) -> torch.Tensor:
    """train.augment's transforms, in their fixed order (shift, flip, crop), drawn from the run's generator."""
    if "shift" in augment:
        x = shift_images(x, shift, generator)
    if "flip" in augment:
        x = flip_images(x, generator)
    if "crop" in augment:
        x = crop_images(x, crop_padding, generator)
    return x


@dataclass
class EpochState:
    """What `train_one_epoch` needs besides the model; built once per fit."""

    source: OnDevice | Streamed  # where the batches come from: slices on the device, or a loader
    indices: torch.Tensor  # training indices on the device
    batch_size: int
    normalize: Normalizer
    optimizer: torch.optim.Optimizer
    task: Task
    loss_fn: Loss
    step_fn: Step | None  # the user's training step, or None: outputs = model(inputs), loss_fn(outputs, targets)
    l1: L1Penalty | None
    generator: torch.Generator
    autocast: bool
    augment: tuple[str, ...]  # train.augment
    shift: int
    crop_padding: int
    flush_every: int
    on_flush: Callable[[list[float], int], None]  # (losses, first step); raises NonFiniteLoss
    step: int = 0  # global step counter
    epoch: int = 0
    step_name: str = ""  # train.step, for its errors


def train_one_epoch(model: nn.Module, state: EpochState) -> dict[str, float]:
    """One pass over the training indices in a random order; returns the mean loss and the task's epoch metrics
    (with a training step of the user's own, which gives no outputs, the loss only).

    A non-finite loss raises NonFiniteLoss (from `on_flush`) out of the epoch.
    """
    model.train()
    device = state.indices.device
    order = state.indices[torch.randperm(len(state.indices), device=device, generator=state.generator)]
    n_batches = math.ceil(len(order) / state.batch_size)
    losses = torch.zeros(n_batches, device=device)
    tally = torch.zeros((), device=device)
    flushed = 0
    for batch, (xb, yb) in enumerate(state.source.batches(order, state.batch_size)):
        xb = augment_images(xb, state.augment, state.shift, state.crop_padding, state.generator)
        xb = state.normalize(xb)
        loss, outputs = train_step(model, xb, yb, state)
        total = loss + state.l1() if state.l1 is not None else loss
        state.optimizer.zero_grad(set_to_none=True)
        total.backward()
        state.optimizer.step()
        losses[batch] = loss.detach()
        if outputs is not None:
            tally = tally + state.task.tally(outputs.detach(), yb)
        if batch + 1 - flushed >= state.flush_every or batch + 1 == n_batches:
            state.on_flush(losses[flushed:batch + 1].tolist(), state.step + flushed)
            flushed = batch + 1
    state.step += n_batches
    scores = state.task.from_tally(tally, len(order)) if state.step_fn is None else {}
    return {"train_loss": losses.mean().item(), **{f"train_{name}": value for name, value in scores.items()}}


def train_step(model: nn.Module, xb: torch.Tensor, yb: torch.Tensor,
               state: EpochState) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The batch's loss (and the outputs it came from, None from the user's own step), under autocast."""
    targets = state.task.model_targets(yb)
    with torch.autocast(xb.device.type, dtype=torch.bfloat16, enabled=state.autocast):
        if state.step_fn is None:
            outputs = model(xb).float()
            return state.loss_fn(outputs, targets), outputs
        context = StepContext(epoch=state.epoch, step=state.step, generator=state.generator, loss=state.loss_fn)
        loss = state.step_fn(model, xb, targets, context)
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise UserError(f"train.step={state.step_name}: returned {_what(loss)}; it must return the batch's "
                        f"loss as a scalar tensor")
    return loss.float(), None


def _what(value: Any) -> str:
    return f"a tensor of shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__


@torch.no_grad()
def evaluate(model: nn.Module, part: Part, normalize: Normalizer, task: Task) -> dict[str, float]:
    """The mean loss and the task's epoch metrics over a part, in eval mode, with one sync at the end.

    In float32 (bf16 autocast is for training steps only): the served model runs in float32 too, so it gives
    what evaluate scored, on a GPU as on the CPU."""
    model.eval()
    device = normalize.device
    loss_sum = torch.zeros((), device=device)
    tally = torch.zeros((), device=device)
    for xb, yb in part.chunks(EVAL_BATCH, device):
        outputs = model(normalize(xb)).float()
        loss_sum += task.criterion(outputs, task.model_targets(yb)).float() * len(yb)  # losses are batch means
        tally = tally + task.tally(outputs, yb)
    return {"loss": loss_sum.item() / max(len(part), 1), **task.from_tally(tally, len(part))}


@torch.no_grad()
def predict(model: nn.Module, part: Part, normalize: Normalizer, task: Task,
            batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """The task's predictions (class probabilities, values in the targets' units, label probabilities), in eval
    mode and float32 as `evaluate` and the served model, so all three see the same outputs."""
    model.eval()
    head = task.head().to(normalize.device)
    chunks = [head(model(normalize(xb)).float()) for xb, _ in part.chunks(batch_size, normalize.device)]
    return torch.cat(chunks)


def make_optimizer(model: nn.Module, config: Config, device: torch.device) -> torch.optim.Optimizer:
    groups = parameter_groups(model, config.optim.weight_decay)
    fused = {"fused": True} if device.type == "cuda" else {}
    chosen = names.OPTIMIZERS[config.optim.name]  # the one table of optimizers: its class and the keys it takes
    own = {key: config.get(f"optim.{key}") for key in chosen.keys}
    return getattr(torch.optim, chosen.torch_class)(groups, lr=config.optim.lr, **own, **fused)


def make_scheduler(optimizer: torch.optim.Optimizer, config: Config):
    sched = config.sched
    if sched.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=sched.step_size, gamma=sched.gamma)
    if sched.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "min", factor=sched.gamma, patience=sched.patience)
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.train.epochs)
    return None


@dataclass
class Prepared:
    """Everything `fit` builds before the first epoch; building it checks the config."""

    config: Config
    device: torch.device
    data: Dataset
    train_idx: np.ndarray
    val_idx: np.ndarray
    model: nn.Module
    normalize: Normalizer
    task: Task
    step: Step | None = None
    threads: Threads = Threads(0, "")  # torch's intra-op threads as prepare chose them, and why
    test_rows: np.ndarray | None = None  # rows of the training set that are the test part (split_rows)

    def part(self, indices: np.ndarray) -> Part:
        """The training set's samples at `indices` (the training or validation part), gathered when read."""
        return Part(self.data.train_x, self.data.train_y, torch.as_tensor(indices, device=self.data.train_x.device))

    @property
    def test(self) -> Part:
        """The test part: the data set's own, or a nested estimate's held-out rows of the training set."""
        if self.test_rows is not None:
            return self.part(self.test_rows)
        return Part(self.data.test_x, self.data.test_y)


def build_on_device(config: Config, data: Dataset, outputs: int, device: torch.device,
                    channels_last: bool) -> nn.Module:
    """The model on `device`; one too big for the memory is a one-line error that says how big it is."""
    try:
        model = build_model(config.model, data.input_shape, outputs)
        return model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    except RuntimeError as error:  # torch.OutOfMemoryError (CUDA) is one; the CPU allocator raises a plain one
        if not isinstance(error, torch.OutOfMemoryError) and "allocate" not in str(error):
            raise
    size = parameter_count(config, data, outputs)
    needs = f"{size:,} parameters, {size * 4 / 2**30:,.1f} GiB as float32" if size else "more than there is"
    raise ConfigError(f"model {config.model.name} does not fit in the memory of {device.type} ({needs}); "
                      f"make it smaller (model.hidden, model.channels)")


def parameter_count(config: Config, data: Dataset, outputs: int) -> int | None:
    """The model's size without its memory: built on the meta device, which allocates nothing."""
    try:
        with torch.device("meta"):
            return count_parameters(build_model(config.model, data.input_shape, outputs))
    except Exception:  # a builder that cannot run on meta: the message goes without the size
        return None


def prepare(config: Config) -> Prepared:
    """Load data, check its targets against the task, split it and build the model: raises a UserError on bad
    input, logs nothing."""
    config.validate()
    device = select_device(config.device)
    seed_everything(config.seed, config.train.deterministic)
    data = load_dataset(tasks.data_config(config), device)
    task = tasks.for_run(config, data.train_y, data.test_y)
    rows, test_rows = split_rows(data, task, config.split)
    split_seed = config.split.seed if config.split.seed >= 0 else config.seed
    train_idx, val_idx = make_split(len(rows), task.strata(data.train_y.cpu().numpy()[rows]), config.split,
                                    split_seed)
    train_idx, val_idx = rows[train_idx], rows[val_idx]  # rows of the stored training set
    channels_last = device.type == "cuda" and len(data.input_shape) == 3
    model = build_on_device(config, data, task.outputs, device, channels_last)
    check_deterministic(model, device, config.train.deterministic)
    train_part = Part(data.train_x, data.train_y, torch.as_tensor(train_idx, device=data.train_x.device))
    task.fit(train_part.y.index_select(0, train_part.index).to(device))  # target statistics: training part only
    mean, std = channel_stats(train_part, device=device)  # training part only; per feature for vectors (N, D)
    normalize = Normalizer(mean, std, data.is_image, channels_last)
    first_two = normalize(Part(data.train_x, data.train_y, train_part.index[:2]).gather(device)[0])
    chosen = apply_threads(config.train.threads, forward_flops(model, first_two[:1]))  # before any step
    if user_code.is_reference(config.model.name):
        check_forward(model, first_two, task.outputs, config.model.name)
    check_augment(config, data)
    prepared = Prepared(config, device, data, train_idx, val_idx, model, normalize, task,
                        user_code.load(config.train.step, "train.step") if config.train.step else None, chosen,
                        test_rows)
    check_user_parts(prepared)
    return prepared


def split_rows(data: Dataset, task: Task, split: SplitConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """The stored training set's rows this run splits into training and validation parts, and the rows that
    take the test part's place (None: the data set's own test part). A nested estimate's outer fold
    (split.outer_*) holds some rows out of the training set as its test part; rows, not copies, so a streamed
    set stays where it is."""
    if not split.outer_k:
        return np.arange(len(data.train_y)), None
    return outer_split(len(data.train_y), task.strata(data.train_y.cpu().numpy()), split)


def check_augment(config: Config, data: Dataset) -> None:
    """Augmentation is for images, and a crop's reflection needs a border narrower than the image."""
    augment = [name for name in config.train.augment if name != "none"]
    if augment and not data.is_image:
        raise ConfigError(f"train.augment={augment} applies to images, and {config.data.name} holds "
                          f"{'signals' if data.train_x.dim() > 2 else 'vectors'}")
    if "crop" in augment and config.train.crop_padding >= min(data.input_shape[1:]):
        raise ConfigError(f"train.crop_padding={config.train.crop_padding}: must be smaller than the images "
                          f"({'x'.join(map(str, data.input_shape[1:]))}) for a reflection")


def check_user_parts(prepared: Prepared) -> None:
    """The user's loss, training step and metrics, each tried once on two training samples (the model and the
    random streams are left as they were), so a broken one fails before any run."""
    config, model = prepared.config, prepared.model
    if not (user_code.is_reference(config.train.loss) or prepared.step or config.track.metrics):
        return
    x, y = prepared.part(prepared.train_idx[:2]).gather(prepared.device)
    inputs, targets = prepared.normalize(x), prepared.task.model_targets(y)
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if prepared.device.type == "cuda" else []):
        if user_code.is_reference(config.train.loss):
            with torch.no_grad():
                tasks.check_loss(prepared.task.criterion, model.eval()(inputs).float(), targets, config.train.loss)
        if prepared.step is not None:
            tasks.check_step(prepared.step, model, inputs, targets, prepared.task.criterion, config.train.step)
    if config.track.metrics:  # enough samples for a metric that needs several classes
        part = prepared.part(prepared.train_idx[:max(16, 2 * prepared.task.outputs)])
        predictions = predict(model, part, prepared.normalize, prepared.task).cpu().numpy()
        run_metrics.check(config.track.metrics, prepared.task, part.gather(prepared.device)[1].cpu().numpy(),
                          predictions)


class LossWatch:
    """Receives the per-step losses at each flush: streams them to the tracker, raises on a non-finite one."""

    def __init__(self, tracker: Tracker):
        self.tracker = tracker
        self.epoch = 0

    def __call__(self, values: list[float], first_step: int) -> None:
        self.tracker.log_steps("train_loss_step", values, first_step)
        bad = next((i for i, value in enumerate(values) if not math.isfinite(value)), None)
        if bad is not None:
            raise NonFiniteLoss(f"train loss {values[bad]} at epoch {self.epoch}, step {first_step + bad}")


def epoch_state(prepared: Prepared, optimizer: torch.optim.Optimizer, on_flush: LossWatch) -> EpochState:
    config, device, model = prepared.config, prepared.device, prepared.model
    data = prepared.data
    source = Streamed(data.train_x, data.train_y, device, loader_workers(config.data, device)) if data.streamed \
        else OnDevice(data.train_x, data.train_y)
    return EpochState(
        source=source, indices=torch.as_tensor(prepared.train_idx, device=device),
        batch_size=config.train.batch_size, normalize=prepared.normalize, optimizer=optimizer, task=prepared.task,
        loss_fn=prepared.task.criterion, step_fn=prepared.step, step_name=config.train.step,
        l1=L1Penalty(model, config.reg.l1) if config.reg.l1 > 0 else None,
        generator=torch.Generator(device=device).manual_seed(config.seed + 1), autocast=device.type == "cuda",
        augment=tuple(config.train.augment), shift=config.train.shift, crop_padding=config.train.crop_padding,
        flush_every=config.track.flush_every, on_flush=on_flush)


def fit(what: Config | Prepared, tracker: Tracker | None = None, should_stop: ShouldStop | None = None, *,
        progress: bool = False, checkpoint_path: Path | None = None,
        resume_from: dict[str, Any] | None = None) -> FitResult:
    """Train a config (or one already prepared: its own config is the one trained), streaming per-step and
    per-epoch values to `tracker`; see FitResult for what comes back.

    With `checkpoint_path`, each finished epoch is saved there (atomically) with all a resume needs;
    `resume_from` (a loaded checkpoint) goes on from the epoch after it, as if training had never stopped.
    """
    tracker = tracker or NullTracker()
    prepared = what if isinstance(what, Prepared) else prepare(what)
    loop = TrainingLoop.start(prepared, LossWatch(tracker), resume_from)
    try:
        return _fit(prepared, loop, tracker, should_stop, progress, checkpoint_path)
    finally:
        loop.state.source.close()  # a streamed set's loader workers end with the fit


def _fit(prepared: Prepared, loop: TrainingLoop, tracker: Tracker, should_stop: ShouldStop | None,
         progress: bool, checkpoint_path: Path | None) -> FitResult:
    config, model = prepared.config, prepared.model
    started = time.perf_counter()
    watch = loop.state.on_flush
    compiler = Compiler(model, config.train.compile)  # Dynamo reset for this fit; its compile time kept apart
    compiled = compiler.module
    val = prepared.part(prepared.val_idx)
    history, stopper, state = loop.history, loop.stopper, loop.state
    stop = Stop()
    with tqdm(range(loop.first_epoch, config.train.epochs), desc=run_label(config), unit="epoch",
              disable=not progress, leave=False) as epochs:
        for epoch in epochs:
            watch.epoch = state.epoch = epoch
            try:
                metrics = train_and_validate(compiled, state, val)
                metrics["epoch_seconds"] -= compiler.seconds_since_last_asked()  # kept as summary/compile_seconds
                history.append(metrics)
                tracker.log_metrics(metrics, step=epoch)
                if not math.isfinite(metrics["val_loss"]):
                    raise NonFiniteLoss(f"validation loss {metrics['val_loss']} at epoch {epoch}")
            except NonFiniteLoss as bad:
                stop = Stop("non_finite", str(bad))
                break
            main = f"val_{prepared.task.names.epoch[0]}"
            epochs.set_postfix({"train_loss": f"{metrics['train_loss']:.4f}", main: f"{metrics[main]:.4f}"})
            step_scheduler(loop.scheduler, config, metrics["val_loss"])
            stop = end_epoch(epoch, metrics, loop, prepared, should_stop, checkpoint_path)
            if stop.reason != "completed":
                break
    if config.early_stop.patience > 0:
        stopper.restore(model)
    final = final_metrics(model, prepared, stopper.best_epoch, history, state.step) \
        if stop.reason != "non_finite" and history else {}
    return FitResult(history=history, best_epoch=stopper.best_epoch, stop=stop,
                     metrics=final, model=model, seconds=time.perf_counter() - started, steps=state.step,
                     first_epoch=loop.first_epoch,
                     extra={"parameters": float(count_parameters(model)), **compiler.extra()})


@dataclass
class TrainingLoop:
    """What `fit` carries from epoch to epoch; a checkpoint holds all of it, so a resumed fit goes on bit for bit."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    stopper: EarlyStopping
    state: EpochState
    history: list[dict[str, float]]
    first_epoch: int = 0

    @classmethod
    def start(cls, prepared: Prepared, watch: LossWatch, resume_from: dict[str, Any] | None) -> TrainingLoop:
        config, model = prepared.config, prepared.model
        optimizer = make_optimizer(model, config, prepared.device)
        loop = cls(optimizer, make_scheduler(optimizer, config),
                   EarlyStopping(config.early_stop.patience, config.early_stop.min_delta),
                   epoch_state(prepared, optimizer, watch), [])
        if resume_from is not None:
            loop.resume(resume_from, prepared)
        return loop

    def extra(self, prepared: Prepared) -> dict[str, Any]:
        """A checkpoint's part beyond model, optimizer, epoch and config."""
        return {"scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "early_stopping": self.stopper.state_dict(), "history": self.history, "step": self.state.step,
                "rng": rng_states(self.state.generator), "data_fingerprint": prepared.data.fingerprint}

    def resume(self, saved: dict[str, Any], prepared: Prepared) -> None:
        if saved.get("data_fingerprint") != prepared.data.fingerprint:
            raise DataError(f"the data set is not the one the checkpoint was trained on "
                            f"({prepared.data.fingerprint} vs {saved.get('data_fingerprint')}); cannot resume")
        prepared.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        self.stopper.load_state_dict(saved["early_stopping"])
        self.history = [dict(epoch) for epoch in saved["history"]]
        self.state.step = int(saved["step"])
        set_rng_states(saved["rng"], self.state.generator)  # last: loading above draws no random numbers
        self.first_epoch = int(saved["epoch"]) + 1


def train_and_validate(model: nn.Module, state: EpochState, val: Part) -> dict[str, float] | None:
    """One epoch's training and validation metrics; NonFiniteLoss when a training loss is not finite."""
    tick = time.perf_counter()
    lr = state.optimizer.param_groups[0]["lr"]
    trained = train_one_epoch(model, state)
    scores = evaluate(model, val, state.normalize, state.task)
    return {**trained, **{f"val_{name}": value for name, value in scores.items()}, "lr": lr,
            "epoch_seconds": time.perf_counter() - tick}


def step_scheduler(scheduler, config: Config, val_loss: float) -> None:
    if scheduler is None:
        return
    if config.sched.name == "plateau":
        scheduler.step(val_loss)
    else:
        scheduler.step()


def end_epoch(epoch: int, metrics: dict[str, float], loop: TrainingLoop, prepared: Prepared,
              should_stop: ShouldStop | None, checkpoint_path: Path | None) -> Stop:
    """After the scheduler: early stopping, the epoch's checkpoint (the epoch is whole), then the caller's
    should_stop (pruned), asked last so that a caller who stops the fit by raising (a scheduler's warning
    signal before a preemption) leaves this epoch saved to resume from."""
    stop = early_stop(epoch, metrics, loop.stopper, prepared.model)
    if stop.reason != "completed":
        return stop
    if checkpoint_path is not None:
        checkpoint.save(checkpoint_path, prepared.model, loop.optimizer, epoch, prepared.config, loop.extra(prepared))
    why = should_stop(epoch, metrics) if should_stop is not None else ""
    return Stop("pruned", why) if why else stop


def early_stop(epoch: int, metrics: dict[str, float], stopper: EarlyStopping, model: nn.Module) -> Stop:
    """Stop() (go on) or early_stopping."""
    if stopper.step(metrics["val_loss"], epoch, model):
        return Stop("early_stopping", f"no val loss improvement for {stopper.patience} epochs after epoch "
                                      f"{stopper.best_epoch}")
    return Stop()


def final_metrics(model: nn.Module, prepared: Prepared, best_epoch: int, history: list[dict[str, float]],
                  steps: int) -> dict[str, float]:
    """Metrics of the model as it is returned: on the training part (eval mode), validation (the chosen epoch's)
    and test; then the task's scores beyond the epoch's (r2, macro F1, mAP) and track.metrics."""
    task = prepared.task
    chosen = history[best_epoch] if prepared.config.early_stop.patience > 0 and best_epoch >= 0 else history[-1]
    train = evaluate(model, prepared.part(prepared.train_idx), prepared.normalize, task)
    test = evaluate(model, prepared.test, prepared.normalize, task)
    val = {key.removeprefix("val_"): value for key, value in chosen.items() if key.startswith("val_")}
    values = {f"{prefix}{name}": value for prefix, scores in (("final_train_", train), ("final_val_", val),
                                                              ("test_", test)) for name, value in scores.items()}
    return {**values, "best_epoch": float(best_epoch), "epochs_run": float(len(history)), "steps_run": float(steps),
            **prediction_scores(model, prepared)}


def prediction_scores(model: nn.Module, prepared: Prepared) -> dict[str, float]:
    """The task's scores of whole predictions (r2, macro F1, mAP) on the three parts, and `track.metrics` on
    validation and test."""
    task, extra = prepared.task, prepared.config.track.metrics
    beyond_epoch = [name for name in task.names.final if name not in task.names.epoch]
    if not beyond_epoch and not extra:
        return {}
    parts = {"final_train_": prepared.part(prepared.train_idx), "final_val_": prepared.part(prepared.val_idx),
             "test_": prepared.test}
    values: dict[str, float] = {}
    for prefix, part in parts.items():
        predictions = predict(model, part, prepared.normalize, task)
        truth, predicted = part.targets().numpy(), predictions.cpu().numpy()
        values.update({prefix + name: value for name, value in task.final_scores(truth, predicted).items()})
        if prefix != "final_train_":
            values.update(run_metrics.score(extra, truth, predicted, prefix, task))
    return values


def warm_up(config: Config) -> None:
    """Load the data and build a model and optimizer once, so that the imports (seconds) and loading they
    trigger are not counted in the first run's time, which studies record and may optimise."""
    prepared = prepare(config)
    make_optimizer(prepared.model, config, prepared.device)


def run_label(config: Config) -> str:
    """A readable name: model, data set and the knobs most people change."""
    if config.track.run_name:
        return config.track.run_name
    return f"{config.model.name}-{config.data.name} lr={config.optim.lr:.3g} bs={config.train.batch_size}"
