"""TensorFlow's thread pools: one thread for models too small to split, TensorFlow's own choice otherwise.

On 2 CPU cores the Fashion-MNIST MLP (3.3 million multiply-adds a step at batch 32) trains in half the
CPU time with one intra-op and one inter-op thread (1.0 s instead of 2.1 s an epoch): its matrices are too
small to share between threads. The CNN (540 million a step) spends the same CPU time either way, so one
thread would double its wall time. The rule below is read from the config alone, because TensorFlow fixes
its pools when it runs its first operation, before any model exists to measure.
"""

from __future__ import annotations

import math

from dltrain.config import LoadedConfig, split_spec
from dltrain.errors import DltrainError

# Below this many multiply-adds a training step, one thread beats two (see the module docstring).
SMALL_STEP = 10_000_000
# Layers whose cost is at most a few operations per value; a model of only these and Dense is "small"
# when its Dense layers are. Anything else (convolutions, recurrences, attention, ...) keeps TF's pools.
_LIGHT = {"Activation", "AlphaDropout", "BatchNormalization", "Dropout", "ELU", "Flatten", "GaussianDropout",
          "GaussianNoise", "LayerNormalization", "LeakyReLU", "PReLU", "ReLU", "Rescaling", "Reshape",
          "Softmax"}
KEYS = ("intra_op_parallelism_threads", "inter_op_parallelism_threads")


def step_multiply_adds(loaded: LoadedConfig, input_shape: tuple[int, ...] | None) -> int | None:
    """Multiply-adds of one forward pass over a batch, for a chain of Dense and light layers; else None."""
    model = loaded.config.model
    shape = list(model.input_shape or input_shape or [])
    if model.inputs or model.task is not None or not shape or None in shape:
        return None
    total = 0
    for spec in model.layers:
        name, kwargs = split_spec(spec)
        if kwargs.get("inputs") is not None:
            return None
        if name == "Dense":
            units = kwargs.get("units")
            if type(units) is not int:
                return None  # building the model reports the mistake, with its line
            total += math.prod(shape) * units
            shape = shape[:-1] + [units]
        elif name == "Flatten":
            shape = [math.prod(shape)]
        elif name == "Reshape":
            target = kwargs.get("target_shape")
            if not isinstance(target, list) or not all(type(d) is int and d > 0 for d in target):
                return None
            shape = list(target)
        elif name not in _LIGHT:
            return None
    return total * loaded.config.training.batch_size


def choose(loaded: LoadedConfig, input_shape: tuple[int, ...] | None) -> dict[str, int | None]:
    """The pool sizes to use: the config's numbers, with "auto" resolved (None: TensorFlow's default)."""
    training = loaded.config.training
    work = step_multiply_adds(loaded, input_shape)
    auto = 1 if work is not None and work < SMALL_STEP else None
    return {key: auto if getattr(training, key) == "auto" else getattr(training, key) for key in KEYS}


def apply(loaded: LoadedConfig, input_shape: tuple[int, ...] | None, error: type[DltrainError]) -> None:
    """Size TensorFlow's pools before it runs; `error` if TensorFlow already runs with other sizes."""
    import tensorflow as tf

    for key, wanted in choose(loaded, input_shape).items():
        get = getattr(tf.config.threading, f"get_{key}")
        if wanted is None or get() == wanted:
            continue
        try:
            getattr(tf.config.threading, f"set_{key}")(wanted)
        except RuntimeError:  # TensorFlow fixes its pools when it runs its first operation
            if getattr(loaded.config.training, key) == "auto":
                continue  # a speed-up we cannot have in this process, not something the user asked for
            raise loaded.error(error, ("training", key),
                               f"TensorFlow already runs in this process with {key}={get()}; it cannot change",
                               hint="set it in a fresh process (the dltrain command) or remove it") from None
