"""`format: tfrecord`: a glob of TFRecord shards of `tf.train.Example`s, streamed with parallel reads.

One cheap pass when the data is read parses every record's keys without decoding any image: it counts each
shard's records (an epoch's batches), keeps the labels (classes, the confusion matrix), and finds truncated
shards, missing keys, wrong dtypes and encoded images that are not PNG or JPEG, naming the file and the
record number (counted from 0, as `TFRecordDataset(file).skip(n)` counts). Files are the unit of splitting
(`test_split`, `validation_split`) and of sharding over workers.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dltrain.config import DatasetConfig
from dltrain.data.pipeline import first, reason, second
from dltrain.data.types import DatasetInfo, RecordSplit, Source
from dltrain.errors import DataError

_SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff"}
_BATCH = 4096  # records parsed at once in the cheap pass
_NAMED = 3
_HINT = "rewrite the shard, or set dataset.skip_damaged: true to leave damaged records out (counted in a note)"
_CACHE: dict[Any, Any] = {}  # the cheap pass of the shards as they are on disk, shared by describe and read


def shard_files(pattern: str, key: str = "dataset.path") -> list[str]:
    """The shard files a glob names, sorted; none is an error."""
    files = sorted(f for f in glob.glob(pattern) if os.path.isfile(f))
    if not files:
        raise DataError(f"no file matches '{pattern}'", key=key,
                        hint="give a glob of TFRecord shards, e.g. data/train-*.tfrecord")
    return files


def _features(config: DatasetConfig) -> dict[str, Any]:
    """The `features` mapping: key -> {shape, dtype, decode}; the label key is read as a scalar int64 unless
    the mapping gives it."""
    features = dict(config.features or {})
    label = config.label or "label"
    if label not in features:
        from dltrain.config import RecordFeature
        features[label] = RecordFeature(shape=[], dtype="int64")
    inputs = [key for key in features if key != label]
    if len(inputs) != 1:
        raise DataError(f"dataset.features gives {len(inputs)} inputs besides the label '{label}' "
                        f"({', '.join(inputs) or 'none'}); a tfrecord source reads one", key="dataset.features",
                        hint="map the one tf.train.Example key the model reads, and the label, to {shape, dtype}")
    return features


def _spec(features: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf

    return {key: tf.io.FixedLenFeature(list(f.shape), getattr(tf, f.dtype)) for key, f in features.items()}


def _reason(error: Exception) -> str:
    return reason(error).replace("Name: <unknown>, ", "")


@dataclass
class Scan:
    """What the cheap pass found in the shards."""

    stops: list[int] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    skips: dict[int, np.ndarray] = field(default_factory=dict)
    damaged: list[str] = field(default_factory=list)  # "file: record n: why", for the note


def _checker(features: dict[str, Any], label: str) -> Any:
    """A function from a batch of serialized records to (labels, a bad-signature flag per record)."""
    import tensorflow as tf

    spec = _spec(features)
    encoded = {key: _SIGNATURES[f.decode] for key, f in features.items() if f.decode}

    def check(records: Any) -> Any:
        parsed = tf.io.parse_example(records, spec)
        bad = tf.zeros_like(records, dtype=tf.bool)
        for key, signature in encoded.items():
            head = tf.strings.substr(parsed[key], 0, len(signature))
            bad = tf.logical_or(bad, tf.not_equal(head, signature))
        return parsed[label], bad

    return check


def _passed(_: Any, out: Any) -> Any:
    import tensorflow as tf

    return tf.logical_not(tf.reduce_any(out[1]))


def _one(path: str, number: int) -> Any:
    import tensorflow as tf

    return next(iter(tf.data.TFRecordDataset(path).skip(number).take(1)))


def _diagnose(path: str, features: dict[str, Any], label: str, check: Any) -> tuple[int, list[tuple[int, str]], str]:
    """(records readable, [(record number, why)] of the records that do not parse, why the file ends early or "")."""
    import tensorflow as tf

    readable, truncated = 0, ""
    try:
        for batch in tf.data.TFRecordDataset(path).batch(_BATCH):
            readable += int(batch.shape[0])
    except tf.errors.OpError as error:
        readable = sum(1 for _ in tf.data.TFRecordDataset(path).ignore_errors())
        truncated = _reason(error)
    good = tf.data.TFRecordDataset(path).take(readable).enumerate() \
        .map(lambda i, r: (i, check(tf.expand_dims(r, 0)))).filter(_passed).map(first).ignore_errors()
    found = np.fromiter((int(i) for i in good.as_numpy_iterator()), dtype=np.int64)
    bad = []
    for number in np.setdiff1d(np.arange(readable), found):
        try:
            _, flag = check(tf.expand_dims(_one(path, int(number)), 0))
            key = next(k for k, f in features.items() if f.decode)
            why = f"'{key}' is not a {features[key].decode.upper()} image" if bool(flag[0]) else "unreadable"
        except tf.errors.OpError as error:
            why = _reason(error)
        bad.append((int(number), why))
    return readable, bad, truncated


def _scan(files: list[str], config: DatasetConfig) -> Scan:
    """The cheap pass over every shard: record counts and labels, damaged records found and named."""
    import tensorflow as tf

    features, label = _features(config), config.label or "label"
    stamp = (tuple(files), tuple((os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files),
             repr(sorted((k, v.model_dump()) for k, v in features.items())), label, config.skip_damaged)
    if stamp in _CACHE:
        return _CACHE[stamp]
    check = _checker(features, label)
    scan = Scan()
    for index, path in enumerate(files):
        labels: list[np.ndarray] = []
        flags: list[np.ndarray] = []
        try:
            for y, bad in tf.data.TFRecordDataset(path, buffer_size=1 << 22).batch(_BATCH).map(check):
                labels.append(y.numpy())
                flags.append(bad.numpy())
            found = np.concatenate(flags) if flags else np.zeros(0, bool)
            if not found.any():
                scan.stops.append(int(len(found)))
                scan.labels.append(np.concatenate(labels) if labels else np.zeros(0))
                continue
        except tf.errors.OpError:
            pass
        readable, bad, truncated = _diagnose(path, features, label, check)
        if not config.skip_damaged and (bad or truncated):
            if bad:
                raise DataError(f"{path}: record {bad[0][0]}: {bad[0][1]}", key="dataset.path", hint=_HINT)
            raise DataError(f"{path}: record {readable}: the file ends inside it (truncated: {truncated})",
                            key="dataset.path", hint=_HINT)
        numbers = np.array([n for n, _ in bad], dtype=np.int64)
        scan.damaged += [f"{path}: record {n}: {why}" for n, why in bad]
        if truncated:
            scan.damaged.append(f"{path}: records from {readable} on (truncated)")
        scan.stops.append(readable)
        if len(numbers):
            scan.skips[index] = numbers
        raw = tf.data.TFRecordDataset(path).take(readable).enumerate() \
            .filter(lambda i, r: tf.logical_not(tf.reduce_any(tf.equal(i, numbers)))).map(second)
        ys = [check(batch)[0].numpy() for batch in raw.batch(_BATCH)]
        scan.labels.append(np.concatenate(ys) if ys else np.zeros(0))
    _CACHE.clear()
    _CACHE[stamp] = scan
    return scan


def parser(features: dict[str, Any], label: str, shapes: dict[str, tuple[int, ...]], classify: bool) -> Any:
    """A TF-ops-only function from one serialized Example to (example, label): an image decoded to uint8 of the
    shape the first record has (another shape is an error naming the record)."""
    inputs = [key for key in features if key != label]

    def parse(record: Any) -> Any:
        import tensorflow as tf

        parsed = tf.io.parse_single_example(record, _spec(features))
        x = {}
        for key in inputs:
            decode = features[key].decode
            if decode:
                channels = shapes[key][-1]
                image = (tf.io.decode_png if decode == "png" else tf.io.decode_jpeg)(parsed[key], channels=channels)
                x[key] = tf.ensure_shape(image, shapes[key])
            else:
                x[key] = parsed[key]
        y = tf.cast(tf.reshape(parsed[label], []), tf.int32) if classify else parsed[label]
        return x[inputs[0]], y

    return parse


def python_records(path: str) -> Any:
    """The serialized records of one shard, read in Python (TFRecord framing: length, CRC, data, CRC): describe()
    runs before a multi-worker strategy starts, when TensorFlow must not run an op yet."""
    with open(path, "rb") as handle:
        while True:
            head = handle.read(12)
            if len(head) < 12:
                return
            length = int.from_bytes(head[:8], "little")
            data = handle.read(length)
            if len(data) < length or len(handle.read(4)) < 4:
                return  # truncated: the cheap pass in read() names it
            yield data


def _example(record: bytes) -> Any:
    from tensorflow.core.example import example_pb2  # the protobuf class alone: no TensorFlow op runs

    return example_pb2.Example.FromString(record).features.feature


def image_shape(encoded: bytes) -> tuple[int, int, int]:
    """(height, width, channels) TensorFlow's decoder gives an encoded image, read by Pillow from its header."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        channels = {"L": 1, "I;16": 1, "LA": 2, "RGB": 3, "RGBA": 4, "P": 4 if "transparency" in image.info else 3,
                    "CMYK": 4, "1": 1}.get(image.mode, 3)
        return image.height, image.width, channels


def _shapes(files: list[str], features: dict[str, Any], label: str) -> dict[str, tuple[int, ...]]:
    """Each input's shape: its declared shape, or for an encoded image the first record's decoded shape."""
    shapes = {key: tuple(f.shape) for key, f in features.items() if key != label}
    encoded = [key for key, f in features.items() if f.decode and key != label]
    if encoded:
        first = next(python_records(files[0]), None)
        if first is None:
            raise DataError(f"{files[0]}: record 0: the file has no whole record", key="dataset.path", hint=_HINT)
        try:
            found = _example(first)
            for key in encoded:
                shapes[key] = image_shape(found[key].bytes_list.value[0])
        except Exception as error:  # protobuf's DecodeError, Pillow's errors, a missing key
            raise DataError(f"{files[0]}: record 0: cannot read '{encoded[0]}' as an encoded image "
                            f"({type(error).__name__}: {error})", key="dataset.path", hint=_HINT) from None
    return shapes


def _largest_label(files: list[str], label: str) -> int:
    """The largest class index in the shards, read in Python (see python_records)."""
    largest = -1
    for path in files:
        for number, record in enumerate(python_records(path)):
            try:
                values = _example(record)[label].int64_list.value
            except Exception:  # damaged: the cheap pass in read() names it
                continue
            if values:
                largest = max(largest, max(values))
    return largest


def _classes(config: DatasetConfig, features: dict[str, Any], label: str, files: list[str],
             labels: np.ndarray | None) -> tuple[int | None, list[str] | None]:
    """(number of classes, names): from the config, else the largest label (read here unless `labels` are given)."""
    if features[label].dtype != "int64":
        return None, None  # float labels: a regression
    if config.class_names is not None:
        return len(config.class_names), list(config.class_names)
    if config.num_classes is not None:
        return config.num_classes, None
    largest = (int(labels.max()) if len(labels) else -1) if labels is not None else _largest_label(files, label)
    return largest + 1, None


def _info(config: DatasetConfig, files: list[str], labels: np.ndarray | None = None
          ) -> tuple[DatasetInfo, dict[str, Any], dict[str, tuple[int, ...]]]:
    features, label = _features(config), config.label or "label"
    if label not in features or list(features[label].shape) not in ([], [1]) and features[label].dtype == "int64":
        raise DataError(f"the label '{label}' must be one int64 class index or float32 values", key="dataset.label")
    shapes = _shapes(files, features, label)
    num_classes, names = _classes(config, features, label, files, labels)
    inputs = [key for key in features if key != label]
    name = os.path.basename(os.path.dirname(files[0])) or "tfrecord"
    info = DatasetInfo(name, shapes[inputs[0]], num_classes, names)
    return info, features, shapes


def describe(config: DatasetConfig) -> DatasetInfo:
    """Shapes from the features (an encoded image: the first record's); classes from the config, else from the
    labels the cheap pass reads."""
    return _info(config, shard_files(config.path or ""))[0]


def read(config: DatasetConfig, seed: int) -> Source:
    """The shards, streamed: after the cheap pass only their record counts and labels are in memory."""
    files = shard_files(config.path or "")
    scan = _scan(files, config)
    info, features, shapes = _info(config, files, np.concatenate(scan.labels))
    label = config.label or "label"
    if scan.damaged:
        shown = "; ".join(scan.damaged[:_NAMED]) + ("; ..." if len(scan.damaged) > _NAMED else "")
        info.notes.append(f"skipped {len(scan.damaged):,} damaged record{'s' if len(scan.damaged) > 1 else ''} "
                          f"(skip_damaged): {shown}")
    classify = info.num_classes is not None
    y = np.concatenate(scan.labels).astype(np.int32 if classify else np.float32)
    if y.ndim == 2 and y.shape[1] == 1 and classify:
        y = y[:, 0]
    inputs = [key for key in features if key != label]
    dtype = "uint8" if features[inputs[0]].decode else features[inputs[0]].dtype
    split = RecordSplit(files, np.array(scan.stops, dtype=np.int64), y, parser(features, label, shapes, classify),
                        shapes[inputs[0]], dtype, dict(scan.skips))
    return Source(split, None, info)
