"""best.keras: the model of the best epoch by the monitored metric, kept across resumes.

Keras's `ModelCheckpoint(save_best_only=True)` writes in place (a crash can leave half a file) and
forgets the best value in a new process; this callback writes atomically and starts from the run's
history when a run resumes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

import dltrain.runs.folders as runs
import dltrain.runs.history as history

BEST_FILE = "best.keras"


def monitored(user_callbacks: list[Any], has_validation: bool) -> tuple[str, str]:
    """The metric (and mode) that picks the best epoch: the config's EarlyStopping / ModelCheckpoint
    monitor, else `val_loss`, else `loss` when there is no validation split."""
    for kind in (keras.callbacks.EarlyStopping, keras.callbacks.ModelCheckpoint):
        for callback in user_callbacks:
            if isinstance(callback, kind) and isinstance(getattr(callback, "monitor", None), str):
                return callback.monitor, getattr(callback, "mode", "auto")
    return ("val_loss" if has_validation else "loss"), "auto"


def _higher_is_better(model: keras.Model, monitor: str, mode: str) -> bool:
    """Keras's own rule for mode "auto": losses go down, metrics go the way their `_direction` says."""
    if mode in ("min", "max"):
        return mode == "max"
    name = monitor.removeprefix("val_")
    if name.endswith("loss"):
        return False
    for metric in getattr(model, "metrics", []):
        for inner in getattr(metric, "metrics", None) or [metric]:
            if getattr(inner, "name", None) == name and hasattr(inner, "_direction"):
                return inner._direction == "up"
    return history.higher_is_better(name)


class BestModel(keras.callbacks.Callback):
    """After each epoch that improves the monitored metric, save the model atomically as best.keras."""

    def __init__(self, run_dir: Path, monitor: str, mode: str = "auto",
                 past: list[dict[str, float]] | None = None):
        super().__init__()
        self.path = run_dir / BEST_FILE
        self.monitor = monitor
        self.mode = mode
        self.higher: bool | None = None
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._past = list(past or [])

    def _start(self) -> None:
        # Like Keras's monitors, decide the direction once the compiled metrics exist (after a step).
        self.higher = _higher_is_better(self.model, self.monitor, self.mode)
        # A resumed run competes with the epochs before it, whose best model is already on disk.
        if self._past and self.path.is_file():
            found = history.best_epoch(self._past, self.monitor, self.higher)
            if found is not None:
                self.best, self.best_epoch = found

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.higher is None:
            self._start()
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self.best is not None and not (value > self.best if self.higher else value < self.best):
            return
        if not all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in self.model.weights
                   if np.issubdtype(np.dtype(w.dtype), np.floating)):
            return  # never keep non-finite weights, even when the metric looks good
        runs.save_model(self.model, self.path)
        self.best, self.best_epoch = value, epoch + 1
