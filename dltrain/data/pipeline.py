"""Splits become batched, prefetched `tf.data` pipelines; streamed files are decoded in parallel."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import numpy as np

from dltrain.data.types import AnySplit, ArrowSplit, FileSplit, RecordSplit, Split, Streamed
from dltrain.errors import DataError, first_line


def first(a: Any, _: Any) -> Any:
    """The first of a pair (a tf.data map function)."""
    return a


def second(_: Any, b: Any) -> Any:
    """The second of a pair (a tf.data map function)."""
    return b


def decoded(split: FileSplit, paths: Any, labels: Any) -> Any:
    """A dataset of (example, label) from tensors of paths and labels, read in parallel, in order."""
    import tensorflow as tf

    @tf.autograph.experimental.do_not_convert
    def read(path: Any, label: Any) -> tuple[Any, Any]:
        return split.read(path), label if split.read_y is None else split.read_y(label)

    ds = tf.data.Dataset.from_tensor_slices((paths, labels))
    # deterministic: the order stays the file order, so a seeded shuffle before this step is the order trained on.
    return ds.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# Shards read at once while training (tf.data's interleave); each epoch reads them in another order.
READ_PARALLEL = 16
_READ_BUFFER = 1 << 20


def _raw_records(split: RecordSplit, order: Any = None) -> Any:
    """The serialized records of a record split: shards in `order` (a tensor of shard indices) read in
    parallel and interleaved one record at a time, or (None) in stored order, one shard after another."""
    import tensorflow as tf

    files, stops = tf.constant(split.files), tf.constant(split.stops, dtype=tf.int64)
    # Damaged records left out (skip_damaged), as shard * 2**32 + record number.
    left_out = tf.constant([i * 2**32 + int(n) for i, numbers in split.skips.items() for n in numbers], tf.int64)

    def shard(i: Any) -> Any:
        ds = tf.data.TFRecordDataset(tf.gather(files, i), buffer_size=_READ_BUFFER).take(tf.gather(stops, i))
        if split.skips:
            ds = ds.enumerate().filter(
                lambda n, _: tf.logical_not(tf.reduce_any(tf.equal(i * 2**32 + n, left_out)))).map(second)
        return ds

    if order is None:
        return tf.data.Dataset.range(len(split.files)).flat_map(shard)
    return tf.data.Dataset.from_tensor_slices(tf.cast(order, tf.int64)).interleave(
        shard, cycle_length=min(READ_PARALLEL, len(split.files)), num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True)


def records(split: RecordSplit, order: Any = None, shuffle: tuple[int, Any] | None = None) -> Any:
    """(example, label) of a record split, parsed and decoded in parallel; `shuffle` (buffer, seed) shuffles
    the serialized records (small) before they are decoded."""
    import tensorflow as tf

    ds = _raw_records(split, order)
    if shuffle is not None:
        ds = ds.shuffle(shuffle[0], seed=shuffle[1], reshuffle_each_iteration=False)
    parse = tf.autograph.experimental.do_not_convert(split.parse)
    return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# Rows taken from an Arrow table at once: the only Python objects are one chunk's (encoded images).
ARROW_CHUNK = 1024


def arrow_rows(split: ArrowSplit, order: Any = None) -> Any:
    """(example, label) of an Arrow split: chunks of rows taken from the memory-mapped table by a generator, in
    `order` (a tensor of positions: the permutation in-memory arrays train in) or in stored order; decoded in
    parallel."""
    import tensorflow as tf

    count = len(split)
    order = tf.range(count, dtype=tf.int64) if order is None else tf.cast(order, tf.int64)

    def chunks(positions: np.ndarray) -> Any:
        for start in range(0, count, ARROW_CHUNK):
            picked = positions[start: start + ARROW_CHUNK]
            yield split.rows(split.index[picked]), split.y[picked]

    raw_shape = [] if split.decode is not None else list(split.element_shape)
    signature = (tf.TensorSpec([None, *raw_shape], getattr(tf, split.raw_dtype)),
                 tf.TensorSpec([None, *split.y.shape[1:]], tf.as_dtype(split.y.dtype)))
    ds = tf.data.Dataset.from_generator(chunks, output_signature=signature, args=(order,)).unbatch()
    if split.decode is not None:
        decode = split.decode
        ds = ds.map(lambda raw, y: (decode(raw), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.apply(tf.data.experimental.assert_cardinality(count))


def own_threads(ds: Any) -> Any:
    """A streamed pipeline with a thread pool of its own, one thread per core: dltrain gives small models one
    TensorFlow thread (dltrain/threads.py), which would otherwise decode every example too."""
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = os.cpu_count() or 1
    return ds.with_options(options)


def stream(split: AnySplit) -> Any:
    """A streamed split's (example, label) pairs in stored order, decoded in parallel."""
    if isinstance(split, RecordSplit):  # its length is known from the cheap pass: Keras counts the batches
        import tensorflow as tf

        return records(split).apply(tf.data.experimental.assert_cardinality(len(split)))
    if isinstance(split, ArrowSplit):
        return arrow_rows(split)
    return decoded(split, split.paths, split.y)


def memory_available() -> int | None:
    """Bytes of memory the system can still give (MemAvailable), or None where /proc/meminfo is absent."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def check_memory_cache(train: AnySplit, others: list[AnySplit | None]) -> None:
    """`training.cache: true` decodes streamed files into memory: refuse before training when they cannot fit.

    The training split is held three times while training (the decoded array, its tensor, and each epoch's
    shuffled copy); validation and test batches once.
    """
    streamed = [s for s in (train, *others) if isinstance(s, Streamed)]
    if not streamed:
        return
    need = sum(s.nbytes * (3 if s is train else 1) for s in streamed)
    available = memory_available()
    if available is not None and need > available:
        raise DataError(f"caching the decoded images in memory (cache: true) needs about {_size(need)}, "
                        f"more than the {_size(available)} available", key="training.cache",
                        hint="set training.cache: false (decode every epoch; memory stays bounded) or a file "
                             "path (decode once, to disk)")


def in_memory(split: AnySplit, batch_size: int = 256) -> Split:
    """The split as arrays in memory: a streamed split is read and decoded once (its cache in memory)."""
    if isinstance(split, Split):
        return split
    import tensorflow as tf

    x = np.empty((len(split), *split.element_shape), dtype=split.dtype)
    # Labels read from files (masks) are decoded too; class indices stay as they are.
    read_y = getattr(split, "read_y", None)  # only an image folder's masks are files
    y = split.y if read_y is None else np.empty((len(split), *split.y_shape), dtype=split.y_dtype)
    done = 0
    try:
        for batch, labels in stream(split).batch(batch_size).prefetch(tf.data.AUTOTUNE):
            x[done: done + len(batch)] = batch.numpy()
            if read_y is not None:
                y[done: done + len(batch)] = labels.numpy()
            done += len(batch)
    except tf.errors.OpError as error:
        raise damaged(split) or DataError(f"cannot read an example file: {reason(error)}",
                                          hint="remove or replace the damaged file") from None
    return Split(x, y)


def _unreadable(split: FileSplit) -> np.ndarray:
    """The indices of the examples of a streamed split that fail to read (the file, or its mask)."""
    import tensorflow as tf

    index = np.arange(len(split))
    both = tf.data.Dataset.zip(decoded(split, split.paths, split.y), tf.data.Dataset.from_tensor_slices(index))
    read = both.map(lambda example, i: i).ignore_errors()
    good = np.fromiter((int(i) for i in read.as_numpy_iterator()), dtype=np.int64)
    return np.delete(index, good)


def decoded_labels(split: AnySplit, batch_size: int = 256) -> np.ndarray:
    """The labels of a split as an array: masks read from their files (not the examples), else `y` itself."""
    if not isinstance(split, FileSplit) or split.read_y is None:
        return np.asarray(split.y)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(split.y).map(split.read_y, num_parallel_calls=tf.data.AUTOTUNE,
                                                           deterministic=True)
    batches = [batch.numpy() for batch in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)]
    return np.concatenate(batches) if batches else np.empty((0, *split.y_shape), split.y_dtype)


def _record_damage(split: RecordSplit) -> tuple[str, int, str] | None:
    """(file, record number, why) of the first record of a record split that does not parse or decode (a pass
    over every record, made only after an error; TensorFlow's errors do not say which record)."""
    import tensorflow as tf

    for i, path in enumerate(split.files):
        stop = int(split.stops[i])
        left_out = split.skips.get(i, np.empty(0, np.int64))
        good = tf.data.TFRecordDataset(path).take(stop).enumerate() \
            .map(lambda n, r: (n, split.parse(r))).map(first).ignore_errors()
        read = np.fromiter((int(n) for n in good.as_numpy_iterator()), dtype=np.int64)
        missing = np.setdiff1d(np.setdiff1d(np.arange(stop), left_out), read)
        if len(missing):
            number = int(missing[0])
            try:
                split.parse(next(iter(tf.data.TFRecordDataset(path).skip(number).take(1))))
                why = "it failed once and read on a second try"
            except (tf.errors.OpError, ValueError) as error:
                why = reason(error)
            return path, number, why
    return None


def _arrow_damage(split: ArrowSplit) -> tuple[int, str] | None:
    """(row, why) of the first row of an Arrow split whose value does not decode (after an error only)."""
    import tensorflow as tf

    if split.decode is None:
        return None
    for row in split.index:
        try:
            split.decode(tf.constant(split.rows(np.array([row]))[0]))
        except (tf.errors.OpError, ValueError) as error:
            return int(row), reason(error)
    return None


def unreadable(split: FileSplit) -> list[str]:
    """The files of a streamed split that its `read` fails on: a second pass over all of them, made only
    after an error (TensorFlow's decoders do not name the file they fail on)."""
    return [str(p) for p in split.paths[_unreadable(split)]]


def reason(error: Exception) -> str:
    """TensorFlow's own words from a tf.data error, without its function and iterator names."""
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", first_line(error, limit=2000))
    text = re.sub(r"^Error in user-defined function .*? transformation with iterator: \S+: ", "", text)
    asserted = re.match(r"assertion failed: \[([^\]]+)\]", text)  # a check of ours: its own words only
    if asserted:
        return asserted.group(1)
    return re.sub(r"\s*\[\[.*|\s*\[Op:\w+\].*", "", text)[:300]


def _failure(split: FileSplit, index: int) -> tuple[str, str]:
    """Which file of one example fails to read (the example's, or its mask), and why, in TensorFlow's words."""
    import tensorflow as tf

    one = split.take(slice(index, index + 1))
    tries = [(str(one.paths[0]), one.take(slice(None)))]
    if one.read_y is not None:  # the image alone first (its label left as the path), then the pair
        alone = FileSplit(one.paths, one.y, one.read, one.element_shape, one.dtype)
        tries = [(str(one.paths[0]), alone), (f"the mask {one.y[0]}", one)]
    for name, attempt in tries:
        try:
            for _ in decoded(attempt, attempt.paths, attempt.y):
                pass
        except tf.errors.OpError as error:
            return name, reason(error)
    return str(one.paths[0]), "it failed once and read on a second try"


def is_data_error(error: BaseException) -> bool:
    """Whether a TensorFlow error came out of a tf.data pipeline (its iterator), not out of the model."""
    import tensorflow as tf

    return isinstance(error, tf.errors.OpError) and "IteratorGetNext" in str(error)


def damaged(*splits: AnySplit | None) -> DataError | None:
    """A DataError naming the files of streamed splits that fail to read, or None if every file reads
    (a full pass over the files: call it only after a tf.data error)."""
    for split in splits:
        if isinstance(split, RecordSplit):
            found = _record_damage(split)
            if found is not None:
                return DataError(f"{found[0]}: record {found[1]}: {found[2]}", key="dataset.path",
                                 hint="rewrite the shard, or set dataset.skip_damaged: true to leave damaged "
                                      "records out (counted in a note)")
        if isinstance(split, ArrowSplit):
            found = _arrow_damage(split)
            if found is not None:
                return DataError(f"row {found[0]} of the dataset: {found[1]}", key="dataset.path",
                                 hint="fix or drop that row (datasets' filter), then save_to_disk again")
        if isinstance(split, FileSplit):
            bad = _unreadable(split)
            if len(bad):
                more = f" (and {len(bad) - 1:,} more)" if len(bad) > 1 else ""
                name, why = _failure(split, int(bad[0]))
                return DataError(f"cannot read {name}{more}: {why}",
                                 hint="remove or replace the damaged file" + ("s" if more else ""))
    return None


def examples(split: AnySplit, index: Any) -> Split:
    """Some examples of a split as arrays (a dry run, plots): streamed files are read for just these."""
    if isinstance(split, RecordSplit):  # records are read in order: one pass up to the last one wanted
        import tensorflow as tf

        wanted = np.asarray(index, dtype=np.int64)
        unique, back = np.unique(wanted, return_inverse=True)
        picked = tf.constant(unique)
        found = records(split).enumerate().take(int(unique[-1]) + 1) \
            .filter(lambda n, _: tf.reduce_any(tf.equal(n, picked))).map(lambda _, pair: pair[0])
        x = next(iter(found.batch(len(unique)))).numpy()[back]
        return Split(x, split.y[wanted])
    return in_memory(split.take(index))


def _digest_files(digest: Any, split: FileSplit) -> None:
    for path in [*split.paths, *(split.y if split.read_y is not None else ())]:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    digest.update(f"{split.element_shape}{split.dtype}".encode())
    digest.update(np.ascontiguousarray(split.y).data)


def cache_file(prefix: str, name: str, split: AnySplit, batch_size: int) -> str:
    """The tf.data cache file for one split: named after its content, so a changed split never reads stale data."""
    digest = hashlib.blake2b(digest_size=8)
    if isinstance(split, FileSplit):
        _digest_files(digest, split)
    elif isinstance(split, ArrowSplit):
        digest.update(f"{split.element_shape}{split.dtype}{getattr(split.rows, 'fingerprint', '')}".encode())
        digest.update(np.ascontiguousarray(split.index).data)
        digest.update(np.ascontiguousarray(split.y).data)
    elif isinstance(split, RecordSplit):
        for path, stop in zip(split.files, split.stops):
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stop}\n".encode())
        digest.update(f"{sorted((i, s.tolist()) for i, s in split.skips.items())}".encode())
        digest.update(np.ascontiguousarray(split.y).data)
    else:
        arrays = list(split.x.values()) if isinstance(split.x, dict) else [split.x]
        for array in (*arrays, split.y):
            digest.update(f"{array.dtype}{array.shape}".encode())
            if array.dtype == object:  # texts: an object array's bytes are addresses, reused once freed
                for value in array:
                    encoded = str(value).encode("utf-8", "surrogatepass")
                    digest.update(b"%d:%b" % (len(encoded), encoded))
            else:
                digest.update(np.ascontiguousarray(array).data)
    digest.update(str(batch_size).encode())
    return f"{prefix}{name}-{digest.hexdigest()}"


def tensors(x: Any) -> Any:
    """Features as tensors: one array, or a dict of named arrays (strings stay strings)."""
    import tensorflow as tf

    return {k: tf.constant(v) for k, v in x.items()} if isinstance(x, dict) else tf.constant(x)


def to_dataset(split: AnySplit, batch_size: int, *, shuffle: bool = False, buffer: int | None = None,
               seed: int | None = None, cache: bool | str = False) -> Any:
    """A batched, prefetched `tf.data.Dataset` over one split; `cache` True (memory) or a file name."""
    import tensorflow as tf

    if isinstance(split, Streamed):
        ds = own_threads(stream(split))
    else:
        ds = tf.data.Dataset.from_tensor_slices((split.x, split.y))
    filename = "" if cache is True else cache or None
    if shuffle:
        if filename is not None:  # cache the examples, not the batches, so every epoch is reshuffled
            ds = ds.cache(filename)
        ds = ds.shuffle(buffer or len(split), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    else:
        ds = ds.batch(batch_size)
        if filename is not None:  # an unshuffled split yields the same batches every epoch: keep them
            ds = ds.cache(filename)
    return ds.prefetch(tf.data.AUTOTUNE)
