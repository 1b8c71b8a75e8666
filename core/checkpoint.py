"""Checkpoints: written atomically, loaded with `weights_only=True`.

A checkpoint holds the model and optimizer state, the epoch and the flat
config, plus what the trainer adds to resume bit for bit (`extra`: scheduler,
early stopping, RNG states, history, step counter). Plain values and tensors
only, so the safe loader accepts it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import disk
from core.config import Config
from core.errors import UserError


def save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, epoch: int, config: Config,
         extra: dict[str, Any] | None = None) -> None:
    """Write to a temporary file beside `path`, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
             "epoch": epoch, "config": config.to_flat(), **(extra or {})}
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(state, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except OSError as error:  # a full disk: the write names no file, the error does
        Path(temporary).unlink(missing_ok=True)
        raise disk.with_filename(error, path) from error
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The saved state; a missing or corrupted file is one clear UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        raise UserError(f"checkpoint {path} is corrupted or not a checkpoint: {str(error).splitlines()[0]}") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise UserError(f"checkpoint {path} is not one of ours (no model or config in it)")
    return state
