"""Fine-tuning in one run (`training.phases`): each phase's trainable flags, optimizer and callbacks, where a
checkpoint stands among the phases, and one Keras `fit` per phase with the epochs numbered through the run.

A run without phases is one phase: the config as written, for `training.epochs`."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import numpy as np

from dltrain.config import LoadedConfig, Path_, Spec, did_you_mean
from dltrain.errors import ConfigError
from dltrain.model import build_object
from dltrain.runs import Checkpoint


@dataclass
class Phase:
    """One phase: its epochs and what changes when it starts."""

    index: int  # 0-based; the history's `phase` column is index + 1
    epochs: int
    # This phase's own entries (name or glob, trainable), in the order written, and where each was written.
    trainable: list[tuple[str, bool, Path_]] = field(default_factory=list)
    # The optimizer in effect during the phase: its own, else the one of the phase before, else the config's.
    optimizer: Spec | None = "adam"  # None: a KerasHub task compiles with its own default
    optimizer_path: Path_ = ("optimizer",)
    callbacks: list[Spec] = field(default_factory=list)
    callbacks_path: Path_ = ("training", "callbacks")
    # Whether the model is compiled again when the phase starts (a new optimizer, with fresh state).
    recompiles: bool = False


@dataclass
class PhaseCount:
    """What one phase trains: its epochs and the model's trainable and frozen parameters during it."""

    number: int
    epochs: int
    trainable: int
    frozen: int


def plan(loaded: LoadedConfig) -> list[Phase]:
    """The run's phases (one, the config as written, when `training.phases` is not set)."""
    config = loaded.config
    training = config.training
    optimizer, optimizer_path = config.optimizer, ("optimizer",)
    if training.phases is None:
        return [Phase(0, training.epochs, [], optimizer, optimizer_path, list(training.callbacks))]
    phases = []
    for i, written in enumerate(training.phases):
        at: Path_ = ("training", "phases", i)
        if written.optimizer is not None:
            optimizer, optimizer_path = written.optimizer, at + ("optimizer",)
        trainable = [(name, bool(value), at + ("trainable", name)) for name, value in (written.trainable or {}).items()]
        callbacks, callbacks_path = ((written.callbacks, at + ("callbacks",)) if written.callbacks is not None
                                     else (training.callbacks, ("training", "callbacks")))
        recompiles = i > 0 and (written.optimizer is not None or written.trainable is not None)
        phases.append(Phase(i, written.epochs, trainable, optimizer, optimizer_path, list(callbacks),
                            callbacks_path, recompiles))
    return phases


def phased(loaded: LoadedConfig) -> bool:
    """Whether the config has `training.phases` (the history then has a `phase` column)."""
    return loaded.config.training.phases is not None


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer of the model, nested ones (a backbone's) after the layer holding them."""
    found: list[keras.layers.Layer] = []

    def walk(layer: Any) -> None:
        for inner in getattr(layer, "layers", None) or []:
            found.append(inner)
            walk(inner)

    walk(model)
    return found


def set_trainable(model: keras.Model, loaded: LoadedConfig, phase: Phase) -> None:
    """Apply the phase's `trainable` entries, in order, over the flags the model has now."""
    layers = all_layers(model)
    for glob, value, path in phase.trainable:
        matched = [layer for layer in layers if fnmatch.fnmatchcase(layer.name, glob)]
        if not matched:
            names = list(dict.fromkeys(layer.name for layer in layers))
            top = ", ".join(layer.name for layer in model.layers)
            raise loaded.error(ConfigError, path, f"no layer of the model matches '{glob}'",
                               hint=did_you_mean(glob, names) or f"the model's layers are: {top}")
        for layer in matched:  # outer layers come first: a nested layer named after them keeps its own value
            layer.trainable = value
            if value:
                for kernel in _lora_kernels(layer):
                    kernel.trainable = True


def _lora_kernels(layer: keras.layers.Layer) -> list[Any]:
    """The kernels that enable_lora froze in `layer` and the layers inside it: a phase that unfreezes a layer
    trains them again, beside their adapters (phase 1 LoRA, phase 2 the whole model)."""
    return [sub._kernel for sub in layer._flatten_layers(include_self=True)
            if getattr(sub, "lora_enabled", False) and getattr(sub, "_kernel", None) is not None]


def _flags(model: keras.Model) -> list[tuple[Any, bool]]:
    # Every layer, however deep (a KerasHub backbone's encoder layers too), parents before their children:
    # enable_lora leaves a backbone trainable with most layers inside it frozen, and only all of them say so.
    layers = model._flatten_layers(include_self=False)
    kernels = [kernel for layer in model.layers for kernel in _lora_kernels(layer)]
    return [(layer, layer.trainable) for layer in layers] + [(kernel, kernel.trainable) for kernel in kernels]


def _put_back(flags: list[tuple[Any, bool]]) -> None:
    for layer, value in flags:  # outer before inner: each layer (and LoRA's kernels) ends with its own flag
        layer.trainable = value


def _count(weights: list[Any]) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def check(model: keras.Model, loaded: LoadedConfig) -> list[PhaseCount]:
    """Apply every phase's flags in turn (each glob must match a layer), build its optimizer and callbacks,
    and count the parameters each phase trains; the model is left with phase 1's flags, as training starts."""
    phases = plan(loaded)
    set_trainable(model, loaded, phases[0])
    flags = _flags(model)
    counts = []
    try:
        for phase in phases:
            set_trainable(model, loaded, phase)
            if phase.optimizer is not None:  # None: a KerasHub task compiles with its own default
                build_object("optimizer", phase.optimizer, loaded, phase.optimizer_path)
            build_callbacks(loaded, phase)
            trainable = _count(model.trainable_weights)
            counts.append(PhaseCount(phase.index + 1, phase.epochs, trainable, _count(model.weights) - trainable))
    finally:
        _put_back(flags)
    return counts


def build_callbacks(loaded: LoadedConfig, phase: Phase) -> list[keras.callbacks.Callback]:
    """The phase's callbacks as new Keras objects (an EarlyStopping starts afresh each phase)."""
    return [build_object("callback", spec, loaded, phase.callbacks_path + (i,))
            for i, spec in enumerate(phase.callbacks)]


def enter(model: keras.Model, loaded: LoadedConfig, phase: Phase, compile_model: Callable[[Spec, Path_], None]) -> None:
    """Start `phase` in a running process: its trainable flags, then Keras's compile with its optimizer."""
    if not phase.recompiles:
        return
    set_trainable(model, loaded, phase)
    compile_model(phase.optimizer, phase.optimizer_path)


def catch_up(model: keras.Model, loaded: LoadedConfig, phases: list[Phase], index: int,
             compile_model: Callable[[Spec, Path_], None]) -> None:
    """Bring a freshly prepared model (phase 1 as written) to where phase `index` runs: every flag set since,
    and the optimizer in effect, compiled (its state comes from the checkpoint after)."""
    if not any(phase.recompiles for phase in phases[1:index + 1]):
        return
    for phase in phases[1:index + 1]:
        set_trainable(model, loaded, phase)
    compile_model(phases[index].optimizer, phases[index].optimizer_path)


@dataclass
class Position:
    """Where a run stands among its phases: the phase to run next and the epoch it started at."""

    index: int  # len(phases) when every phase is over (a run killed before it finished)
    first_epoch: int
    count: int  # the number of phases

    @property
    def current(self) -> int:
        """The phase whose flags and optimizer the model has: the one to run, or the last one."""
        return min(self.index, self.count - 1)

    def fresh_optimizer(self, phases: list[Phase], epoch: int) -> bool:
        """Whether the phase has not trained yet and starts with a new optimizer (the checkpoint holds the
        phase before's, which is not restored)."""
        return self.index < self.count and epoch == self.first_epoch and phases[self.index].recompiles


def position(phases: list[Phase], start: Checkpoint | None) -> Position:
    """The phase a run continues with, from its checkpoint (phase 1 at epoch 0 for a new run)."""
    if start is None:
        return Position(0, 0, len(phases))
    index = min(start.phases_done, len(phases))
    first = sum(1 for row in start.history if int(row.get("phase", 1)) <= index)
    return Position(index, first, len(phases))


class Spanning(keras.callbacks.Callback):
    """A callback that sees one training (begin and end once) across the phases' several `fit` calls."""

    def __init__(self, inner: keras.callbacks.Callback, fits: int):
        super().__init__()
        self.inner = inner
        self.fits = fits
        self._begun = self._ended = 0

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self.inner.set_model(model)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._begun += 1
        if self._begun == 1:
            self.inner.on_train_begin(logs)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._ended += 1
        if self._ended == self.fits:
            self.inner.on_train_end(logs)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.inner.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.inner.on_epoch_end(epoch, logs)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.inner.on_train_batch_end(batch, logs)

