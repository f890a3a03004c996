"""Epoch k's randomness as a pure function of (seed, k), so a resumed run replays it bit for bit.

Keras and tf.data keep their random state in the process: a `tf.data` shuffle restarts its sequence of
orders in a new process, and Dropout's seed generators count calls since the model was built. Neither
survives a crash. Here the training order and every layer's seed generator are re-derived from the seed
and the epoch number at the start of each epoch, so a run resumed at epoch k draws exactly what an
uninterrupted run draws there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import tensorflow as tf

from dltrain.data import Split

# Keras names the state variable of every `keras.random.SeedGenerator` like this; there is no public
# list of a model's seed generators.
_SEED_STATE = "seed_generator_state"


def derived_seed(*parts: int) -> int:
    """A 31-bit seed drawn from a tuple of integers (the same tuple always gives the same seed)."""
    return int(np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts]).integers(0, 2**31 - 1))


class EpochRandomness(keras.callbacks.Callback):
    """Before each epoch, sets the shuffle order and every seed generator from (seed, epoch)."""

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed
        # Read by the training pipeline each time Keras starts a new pass over it (after on_epoch_begin).
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="dltrain_epoch")
        self._base: list[tuple[Any, int]] = []

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        # The initial state holds each generator's own seed (derived from `seed` when the model was built).
        self._base = [(v, int(np.asarray(v.numpy())[0])) for v in model.variables if v.name == _SEED_STATE]

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch.assign(epoch)
        for i, (state, own_seed) in enumerate(self._base):
            value = np.array([derived_seed(self.seed, own_seed, i, epoch), 0], dtype=state.dtype)
            state.assign(value)

    def dataset(self, split: Split, batch_size: int, buffer: int | None = None) -> Any:
        """Batches of `split` in an order drawn from (seed, epoch) at the start of every epoch.

        With `buffer`, each example moves only about `buffer` places from where it is stored, like a
        `tf.data` shuffle buffer of that size; without it the whole split is permuted.
        """
        count = len(split)
        x, y = tf.constant(split.x), tf.constant(split.y)
        seed = tf.constant(derived_seed(self.seed, 0x5EED), dtype=tf.int64)
        spread = float(buffer) if buffer and buffer < count else None

        def order(_: Any) -> Any:
            noise = tf.random.stateless_uniform([count], seed=tf.stack([seed, self.epoch]))
            keys = noise if spread is None else tf.range(count, dtype=tf.float32) + noise * spread
            # One gather per epoch, then whole batches sliced off a reshaped tensor: no per-example or
            # per-batch function calls in tf.data, which cost more than the gather on small models.
            index = tf.argsort(keys)
            xs, ys = tf.gather(x, index), tf.gather(y, index)
            batches = tf.data.Dataset.from_tensor_slices((
                tf.reshape(xs[:full], [full // batch_size, batch_size, *x.shape[1:]]),
                tf.reshape(ys[:full], [full // batch_size, batch_size, *y.shape[1:]])))
            if full < count:
                batches = batches.concatenate(tf.data.Dataset.from_tensors((xs[full:], ys[full:])))
            return batches

        full = count // batch_size * batch_size
        return (tf.data.Dataset.range(1).flat_map(order)
                .apply(tf.data.experimental.assert_cardinality(-(-count // batch_size)))
                .prefetch(tf.data.AUTOTUNE))
