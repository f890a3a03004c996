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

from dltrain.data.types import ArrowSplit, FileSplit, RecordSplit, Split
from dltrain.data.pipeline import arrow_rows, decoded, records, tensors

# With a cache file, streamed examples are stored once in a seeded order and each epoch reshuffles them
# through a buffer of this many examples (when training.shuffle_buffer is not set): memory stays bounded.
FILE_CACHE_BUFFER = 1024

# Keras names the state variable of every `keras.random.SeedGenerator` like this; there is no public
# list of a model's seed generators.
_SEED_STATE = "seed_generator_state"


def derived_seed(*parts: int) -> int:
    """A 31-bit seed drawn from a tuple of integers (the same tuple always gives the same seed)."""
    return int(np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts]).integers(0, 2**31 - 1))


class EpochRandomness(keras.callbacks.Callback):
    """Before each epoch, sets the shuffle order and every seed generator from (seed, epoch)."""

    def __init__(self, seed: int, extra: list[Any] | None = None):
        super().__init__()
        self.seed = seed
        # Variables outside the model whose seed generators also restart each epoch (augmentation layers).
        self.extra = list(extra or [])
        # Read by the training pipeline each time Keras starts a new pass over it (after on_epoch_begin).
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="dltrain_epoch")
        self._base: list[tuple[Any, int]] = []

    def set_model(self, model: keras.Model) -> None:
        if self._base and model is self.model:  # the next fit of a run in phases: the states moved since
            return
        super().set_model(model)
        # The initial state holds each generator's own seed (derived from `seed` when the model was built).
        found = [v for v in [*model.variables, *self.extra] if v.name == _SEED_STATE]
        self._base = [(v, int(np.asarray(v.numpy())[0])) for v in found]

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
        x, y = tensors(split.x), tf.constant(split.y)
        spread = float(buffer) if buffer and buffer < count else None

        def gather(t: Any, index: Any) -> Any:
            return tf.nest.map_structure(lambda a: tf.gather(a, index), t)

        def whole_batches(t: Any) -> Any:
            return tf.nest.map_structure(
                lambda a: tf.reshape(a[:full], [full // batch_size, batch_size, *a.shape[1:]]), t)

        def order(_: Any) -> Any:
            # One gather per epoch, then whole batches sliced off a reshaped tensor: no per-example or
            # per-batch function calls in tf.data, which cost more than the gather on small models.
            index = self._order(count, spread)
            xs, ys = gather(x, index), tf.gather(y, index)
            batches = tf.data.Dataset.from_tensor_slices((whole_batches(xs), whole_batches(ys)))
            if full < count:
                rest = tf.nest.map_structure(lambda a: a[full:], (xs, ys))
                batches = batches.concatenate(tf.data.Dataset.from_tensors(rest))
            return batches

        full = count // batch_size * batch_size
        return _each_epoch(order, count, batch_size)

    def _order(self, count: int, spread: float | None = None) -> Any:
        """Epoch k's order of `count` examples: a permutation drawn from (seed, k); with `spread`, each
        example moves only about that many places."""
        seed = tf.constant(derived_seed(self.seed, 0x5EED), dtype=tf.int64)
        noise = tf.random.stateless_uniform([count], seed=tf.stack([seed, self.epoch]))
        keys = noise if spread is None else tf.range(count, dtype=tf.float32) + noise * spread
        return tf.argsort(keys)

    def files(self, split: FileSplit, batch_size: int, *, cache: str | None = None,
              buffer: int | None = None) -> Any:
        """Batches of a streamed split in an order drawn from (seed, epoch); only the file list is in memory.

        Without `cache`, each epoch permutes the file list and decodes the files in parallel in that order.
        With a cache file, the files are decoded once, in an order drawn from the seed, into the cache; each
        epoch then reshuffles them through a buffer of `buffer` examples seeded from (seed, epoch).
        """
        count = len(split)
        if cache is None:
            paths, labels = tf.constant(split.paths), tf.constant(split.y)

            def epoch(_: Any) -> Any:
                index = self._order(count)
                return decoded(split, tf.gather(paths, index), tf.gather(labels, index)).batch(batch_size)
        else:
            stored_order = np.random.default_rng(derived_seed(self.seed, 0xCAC4E)).permutation(count)
            stored = decoded(split, split.paths[stored_order], split.y[stored_order]).cache(cache)
            seed = derived_seed(self.seed, 0xB0FF)

            def epoch(_: Any) -> Any:
                return stored.shuffle(min(buffer or FILE_CACHE_BUFFER, count), seed=seed + self.epoch * 7919,
                                      reshuffle_each_iteration=False).batch(batch_size)

        return _each_epoch(epoch, count, batch_size)

    def records(self, split: RecordSplit, batch_size: int, *, cache: str | None = None,
                buffer: int | None = None) -> Any:
        """Batches of a record split in an order drawn from (seed, epoch); nothing but the shard list in memory.

        Without `cache`, each epoch reads the shards in a permuted order, several at once, interleaving their
        records, and shuffles the serialized records through a buffer of `buffer` examples before decoding.
        With a cache file, the records are decoded once (shards in an order drawn from the seed) into it, and
        each epoch reshuffles the decoded examples through that buffer.
        """
        count, shards = len(split), len(split.files)
        size = min(buffer or FILE_CACHE_BUFFER, count)
        seed = derived_seed(self.seed, 0xB0FF)
        if cache is None:
            def epoch(_: Any) -> Any:
                order = self._order(shards)
                return records(split, order, (size, seed + self.epoch * 7919)).batch(batch_size)
        else:
            stored_order = np.random.default_rng(derived_seed(self.seed, 0xCAC4E)).permutation(shards)
            stored = records(split, stored_order).cache(cache)
            return self._reshuffled(stored, count, batch_size, size)
        return _each_epoch(epoch, count, batch_size)

    def arrow(self, split: ArrowSplit, batch_size: int, *, cache: str | None = None,
              buffer: int | None = None) -> Any:
        """Batches of an Arrow split: each epoch takes the rows from the memory-mapped table in the permutation
        arrays in memory train in (the same (seed, epoch) order: the same batches as the arrays would give);
        with a cache file, decoded once (in an order drawn from the seed) and reshuffled each epoch through a
        buffer of `buffer` examples."""
        count = len(split)
        if cache is None:
            spread = float(buffer) if buffer and buffer < count else None  # as dataset() orders arrays
            # Not converted by AutoGraph: it would look into the generator that reads the rows.
            epoch = tf.autograph.experimental.do_not_convert(
                lambda _: arrow_rows(split, self._order(count, spread)).batch(batch_size))
            return _each_epoch(epoch, count, batch_size)
        stored_order = np.random.default_rng(derived_seed(self.seed, 0xCAC4E)).permutation(count)
        stored = arrow_rows(split, stored_order).cache(cache)
        return self._reshuffled(stored, count, batch_size, min(buffer or FILE_CACHE_BUFFER, count))

    def _reshuffled(self, stored: Any, count: int, batch_size: int, size: int) -> Any:
        """Batches of cached examples, reshuffled through a buffer of `size` seeded from (seed, epoch)."""
        seed = derived_seed(self.seed, 0xB0FF)

        def epoch(_: Any) -> Any:
            return stored.shuffle(size, seed=seed + self.epoch * 7919, reshuffle_each_iteration=False).batch(batch_size)

        return _each_epoch(epoch, count, batch_size)


def _each_epoch(batches: Any, count: int, batch_size: int) -> Any:
    """A dataset that calls `batches` anew on each pass over it (each epoch, after on_epoch_begin has set
    the epoch), with the batch count Keras needs for its progress and steps_per_execution."""
    return (tf.data.Dataset.range(1).flat_map(batches)
            .apply(tf.data.experimental.assert_cardinality(-(-count // batch_size)))
            .prefetch(tf.data.AUTOTUNE))
