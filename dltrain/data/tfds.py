"""`format: tfds`: any TensorFlow Datasets name, read as (input, label) pairs into memory. TensorFlow
Datasets is an optional dependency (`pip install 'dltrain[tfds]'`)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from dltrain.config import DatasetConfig, did_you_mean
import dltrain.data.text as text
from dltrain.data.builtins import OFFLINE_ENV
from dltrain.data.types import DatasetInfo, Source, Split
from dltrain.errors import DataError, first_line

INSTALL = "pip install 'dltrain[tfds]'"
_BATCH = 1024  # examples converted to numpy at a time


def _tfds() -> Any:
    try:
        import tensorflow_datasets
    except ImportError:
        raise DataError("TensorFlow Datasets is not installed", key="dataset.format",
                        hint=f"{INSTALL}, or use a built-in dataset or a path") from None
    return tensorflow_datasets


def _builder(config: DatasetConfig) -> Any:
    """The dataset's TFDS builder: its facts come from TFDS's code, so nothing is downloaded yet."""
    tfds = _tfds()
    try:
        return tfds.builder(config.name, data_dir=config.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        # Community datasets are listed from the network; the ones TFDS ships are enough for a suggestion.
        known = sorted(set(tfds.list_builders(with_community_datasets=False)))
        base = config.name.split(":")[0].split("/")[0]
        raise DataError(f"TensorFlow Datasets has no dataset '{base}'", key="dataset.name",
                        hint=did_you_mean(base, known) or "the catalog lists the names: "
                        "https://www.tensorflow.org/datasets/catalog/overview") from None
    except Exception as error:  # a bad version or builder config: TFDS says which ones exist
        raise DataError(f"TensorFlow Datasets cannot open '{config.name}': {first_line(error, limit=200)}",
                        key="dataset.name") from None


def _pair(builder: Any, config: DatasetConfig) -> tuple[str, str, Any, Any]:
    keys = builder.info.supervised_keys
    if not (isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(key, str) for key in keys)):
        raise DataError(f"'{config.name}' has no single (input, label) pair in TensorFlow Datasets "
                        f"(its supervised_keys: {keys})", key="dataset.name",
                        hint="dltrain reads a TFDS dataset with as_supervised=True; pick one that has supervised_keys")
    features = builder.info.features
    return keys[0], keys[1], features[keys[0]], features[keys[1]]


def _is_text(feature: Any) -> bool:
    return type(feature).__name__ == "Text"


def _resize_to(config: DatasetConfig, feature: Any) -> tuple[int, int] | None:
    """image_size, when the dataset's images differ in size (else they keep theirs: a Resizing layer in the
    model changes it, and the run folder's config, which lists image_size, reads the same data again)."""
    if type(feature).__name__ == "Image" and None in tuple(feature.shape)[:2]:
        return (config.image_size[0], config.image_size[1])
    return None


def describe(config: DatasetConfig) -> DatasetInfo:
    """Input shape and classes from the TFDS builder's features (no data is read)."""
    builder = _builder(config)
    x_key, y_key, x_feature, y_feature = _pair(builder, config)
    if _is_text(x_feature):
        if config.output_mode != "int" and config.max_tokens is None:
            raise DataError(f"output_mode '{config.output_mode}' needs max_tokens (the length of each text's vector)",
                            key="dataset.output_mode", hint="add e.g. 'max_tokens: 20000' under 'dataset'")
        shape: tuple[int | None, ...] = text.vector_shape(config)
    else:
        shape = tuple(x_feature.shape)
        size = _resize_to(config, x_feature)
        if size is not None:
            shape = (*size, *shape[2:])
        if None in shape:
            raise DataError(f"'{config.name}' examples ('{x_key}') have no fixed shape ({shape})", key="dataset.name",
                            hint="dltrain resizes images to image_size; other variable-size inputs are not supported")
    names = list(y_feature.names) if type(y_feature).__name__ == "ClassLabel" else None
    return DatasetInfo(config.name, shape, len(names) if names else None, names)


def _not_prepared(builder: Any, config: DatasetConfig, why: str) -> DataError:
    return DataError(f"TensorFlow Datasets' '{config.name}' is not prepared in {builder.data_dir} and {why}",
                     key="dataset.data_dir",
                     hint=f"prepare it where there is network (tfds build {config.name} --data_dir DIR) and set "
                          "data_dir to DIR's copy here")


def _split(tfds: Any, builder: Any, config: DatasetConfig, split: str, feature: Any) -> Split:
    import tensorflow as tf

    download = os.environ.get(OFFLINE_ENV) != "1"
    try:
        ds = tfds.load(config.name, split=split, data_dir=config.data_dir, as_supervised=True, download=download)
    except AssertionError as error:  # TFDS's way of saying the files are not there and download is off
        if "could not find data" not in str(error):
            raise
        raise _not_prepared(builder, config, f"downloads are off ({OFFLINE_ENV}=1)") from None
    except Exception as error:  # the download or preparation failed (no network, a manual download, ...)
        raise _not_prepared(builder, config, f"preparing it failed: {first_line(error, limit=200)}") from None
    size = _resize_to(config, feature)
    if size is not None:
        method = config.interpolation

        def resize(x: Any, y: Any) -> tuple[Any, Any]:
            # Rounded back to the stored dtype: uint8 images stay a quarter of float32's memory.
            resized = tf.image.resize(x, size, method=method)
            if x.dtype.is_integer:
                resized = tf.cast(tf.clip_by_value(tf.round(resized), x.dtype.min, x.dtype.max), x.dtype)
            return resized, y

        ds = ds.map(resize, num_parallel_calls=tf.data.AUTOTUNE)
    xs, ys = [], []
    for x, y in tfds.as_numpy(ds.batch(_BATCH)):
        xs.append(x)
        ys.append(y)
    if not ys:
        raise DataError(f"the '{split}' split of '{config.name}' is empty", key="dataset.name")
    x = np.concatenate(xs)
    if _is_text(feature):  # text as str, like text folders; bytes that are not UTF-8 are replaced, not dropped
        decoded = np.empty(len(x), dtype=object)
        decoded[:] = [value.decode("utf-8", errors="replace") for value in x]
        x = decoded
    return Split(x, np.concatenate(ys))


def read(config: DatasetConfig, seed: int) -> Source:
    """The `train` split, and `test` when the dataset has one (else test_split carves one)."""
    tfds = _tfds()
    builder = _builder(config)
    info = describe(config)
    _, _, x_feature, _ = _pair(builder, config)
    # Split names come from the prepared data; before that (or under tfds.testing.mock_data) they are unknown.
    names = list(builder.info.splits.keys()) if builder.info.splits else []
    if names and "train" not in names:
        raise DataError(f"'{config.name}' has no 'train' split (it has: {', '.join(names)})", key="dataset.name",
                        hint="dltrain trains on the 'train' split")
    train = _split(tfds, builder, config, "train", x_feature)
    has_test = "test" in names if names else config.test_split is None
    test = _split(tfds, builder, config, "test", x_feature) if has_test else None
    return Source(train, test, info, text.preprocessing(config) if _is_text(x_feature) else None)

