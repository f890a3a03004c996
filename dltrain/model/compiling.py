"""The Keras objects around a model: optimizer, losses, metrics, callbacks, augmentation and the dtype
policy, each built from the config through the registry. `model.check`, training and evaluation share them."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain.config import LoadedConfig
import dltrain.model.registry as registry


def per_output(loaded: LoadedConfig, value: Any) -> bool:
    """Whether a loss or metrics value is a mapping from output names (rather than one spec)."""
    outputs = loaded.config.model.outputs or []
    return isinstance(value, dict) and len(outputs) > 1 and set(value) <= set(outputs)


def _losses(loaded: LoadedConfig) -> Any:
    loss = loaded.config.loss
    if per_output(loaded, loss):
        return {out: registry.build("loss", spec, loaded, ("loss", out)) for out, spec in loss.items()}
    return registry.build("loss", loss, loaded, ("loss",))


def _metrics(loaded: LoadedConfig, outputs: list[str]) -> Any:
    metrics = loaded.config.metrics
    if isinstance(metrics, dict):
        return {out: [registry.build("metric", m, loaded, ("metrics", out, i)) for i, m in enumerate(specs)]
                for out, specs in metrics.items()}
    if len(outputs) > 1:  # Keras wants metrics per output; each output gets its own metric objects
        return {out: [registry.build("metric", m, loaded, ("metrics", i)) for i, m in enumerate(metrics)]
                for out in outputs}
    return [registry.build("metric", m, loaded, ("metrics", i)) for i, m in enumerate(metrics)]


def compile_model(model: keras.Model, loaded: LoadedConfig, optimizer: Any = None,
                  optimizer_path: tuple = ("optimizer",)) -> None:
    """Compile with the config's optimizer (or the spec `optimizer`, a phase's, written at `optimizer_path`),
    loss, metrics and execution settings."""
    config = loaded.config
    if config.model.task is not None:
        # A KerasHub task's own compile fills what the config leaves out ("auto": the task's optimizer,
        # loss and metrics, e.g. a classifier's from_logits cross-entropy).
        given: dict[str, Any] = {}
        spec = config.optimizer if optimizer is None else optimizer  # a phase's own, else the config's
        if spec is not None:
            given["optimizer"] = registry.build("optimizer", spec, loaded, optimizer_path)
        if config.loss is not None:
            given["loss"] = _losses(loaded)
        if config.metrics:
            given["metrics"] = _metrics(loaded, list(model.output_names))
        model.compile(**given, steps_per_execution=config.training.steps_per_execution,
                      jit_compile=config.training.jit_compile)
        return
    model.compile(
        optimizer=registry.build("optimizer", config.optimizer if optimizer is None else optimizer, loaded,
                                 optimizer_path),
        loss=_losses(loaded),
        loss_weights=config.loss_weights,
        metrics=_metrics(loaded, list(model.output_names)),
        steps_per_execution=config.training.steps_per_execution,
        jit_compile=config.training.jit_compile,
    )


@contextmanager
def dtype_policy(name: str | bool) -> Iterator[None]:
    """Build layers under Keras's dtype policy `name` (False: unchanged); the global policy is restored after."""
    if not name:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_callbacks(loaded: LoadedConfig) -> list[keras.callbacks.Callback]:
    """The config's `training.callbacks` as Keras callback objects."""
    return [registry.build("callback", spec, loaded, ("training", "callbacks", i))
            for i, spec in enumerate(loaded.config.training.callbacks)]


def build_augmentation(loaded: LoadedConfig) -> keras.Sequential | None:
    """`dataset.augmentation` as one Keras model applied to training batches (None when there is none)."""
    specs = loaded.config.dataset.augmentation
    if not specs:
        return None
    layers = [registry.build("layer", spec, loaded, ("dataset", "augmentation", i)) for i, spec in enumerate(specs)]
    return keras.Sequential(layers, name="augmentation")
