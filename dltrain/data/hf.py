"""`format: hf`: a Hugging Face dataset, read through its memory-mapped Arrow files.

`path` is a folder `save_to_disk` wrote (a DatasetDict: its `train`, `validation` and `test` splits; or one
Dataset), or a hub name, fetched online by `datasets.load_dataset`. Images are kept encoded in the table and
decoded by TensorFlow in the pipeline; numbers are read from Arrow without copying; the rows of an epoch are
taken from the table chunk by chunk, so only row numbers and labels are in memory. Text columns are read into
memory and go through the same TextVectorization as text folders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config import DatasetConfig
from dltrain.data.builtins import OFFLINE_ENV
from dltrain.data.types import ArrowSplit, DatasetInfo, Source, Split
from dltrain.errors import DataError

_INSTALL = "pip install 'dltrain[hf]'"
_TEXT = ("string", "large_string")
_OPENED: dict[Any, Any] = {}  # the opened dataset per path: describe and read share it


def _library() -> Any:
    """`datasets`, told to stay offline where dltrain is (else a hub name retries for ~23 s before it fails)."""
    offline = bool(os.environ.get(OFFLINE_ENV))
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
        import huggingface_hub.constants
    except ImportError:
        raise DataError("format: hf needs the datasets library, which is not installed", key="dataset.format",
                        hint=_INSTALL) from None
    if offline:  # both read the variables when first imported, which may have been before this
        datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
        huggingface_hub.constants.HF_HUB_OFFLINE = True
    return datasets


def _open(path: str) -> dict[str, Any]:
    """The splits of a saved folder (one Dataset is 'train') or of a hub dataset, by name."""
    if path in _OPENED:
        return _OPENED[path]
    datasets = _library()
    if Path(path).is_dir():
        try:
            found = datasets.load_from_disk(path)
        except (FileNotFoundError, ValueError) as error:
            raise DataError(f"'{path}' is not a dataset folder save_to_disk wrote: {error}", key="dataset.path",
                            hint="save it with dataset.save_to_disk(FOLDER) (a Dataset or a DatasetDict)") from None
    else:
        try:
            found = datasets.load_dataset(path)
        except (ConnectionError, OSError) as error:
            offline = "offline" if os.environ.get("HF_HUB_OFFLINE") else "unreachable"
            raise DataError(f"'{path}' is not a folder here, and the Hugging Face Hub is {offline} "
                            f"({type(error).__name__})", key="dataset.path",
                            hint=f"on a machine online: datasets.load_dataset('{path}').save_to_disk('FOLDER'); "
                                 "copy FOLDER here and give its path") from None
        except Exception as error:  # datasets raises its own types for an unknown name
            raise DataError(f"cannot load '{path}' from the Hugging Face Hub: {error}", key="dataset.path") from None
    splits = dict(found) if isinstance(found, datasets.DatasetDict) else {"train": found}
    _OPENED.clear()
    _OPENED[path] = splits
    return splits


def _columns(config: DatasetConfig, train: Any) -> tuple[str, str]:
    """(the feature column, the label column), checked against the dataset's."""
    names = list(train.features)
    label = config.label or "label"
    features = [config.features] if isinstance(config.features, str) else list(config.features or [])
    for name, key in [(label, "dataset.label"), *((f, "dataset.features") for f in features)]:
        if name not in names:
            raise DataError(f"the dataset has no column '{name}'", key=key,
                            hint=f"its columns: {', '.join(names)}")
    if not features:
        features = [n for n in names if n != label]
    if len(features) != 1:
        raise DataError(f"an hf source reads one feature column; the dataset has {', '.join(features)}",
                        key="dataset.features", hint="name the one the model reads: features: [image]")
    return features[0], label


def _table(dataset: Any) -> Any:
    if dataset._indices is not None:  # a selection not yet written out: the rows in the selection's order
        dataset = dataset.flatten_indices()
    return dataset.data.table


class _Rows:
    """A table's rows of one column as NumPy: encoded image bytes, or numbers without a copy."""

    def __init__(self, table: Any, column: str, image: bool, shape: tuple[int, ...]) -> None:
        self.table, self.column, self.image, self.shape = table, column, image, shape
        self.fingerprint = f"{id(table)}:{column}"

    def __call__(self, index: np.ndarray) -> np.ndarray:
        values = self.table.column(self.column).take(index).combine_chunks()
        if self.image:
            return values.field("bytes").to_numpy(zero_copy_only=False)
        while hasattr(values, "flatten"):  # fixed-size lists (Sequence(length=n), Array2D) -> one block
            values = values.flatten()
        return values.to_numpy().reshape(len(index), *self.shape)


def _image_decoder(shape: tuple[int, ...]) -> Any:
    def decode(raw: Any) -> Any:
        import tensorflow as tf

        image = tf.io.decode_image(raw, channels=shape[-1], expand_animations=False)
        return tf.ensure_shape(image, shape)

    return decode


def _kind(feature: Any) -> str:
    """"image", "text", "class_label" or "number" for a column's feature type."""
    name = type(feature).__name__
    if name == "Image":
        return "image"
    if name == "ClassLabel":
        return "class_label"
    if name == "Value" and feature.dtype in _TEXT:
        return "text"
    return "number"


def _shape(train: Any, column: str, kind: str) -> tuple[int, ...]:
    """One example's shape: an image's first row decoded, or the fixed shape of a number column."""
    if kind == "image":  # read by Pillow: describe() runs before TensorFlow may (a multi-worker strategy)
        from dltrain.data.records import image_shape

        first = _Rows(_table(train), column, True, ())(np.array([0]))[0]
        if first is None:
            raise DataError(f"column '{column}' holds image paths, not the images", key="dataset.features",
                            hint="cast it with datasets.Image() and save_to_disk again, so the bytes are stored")
        return image_shape(first)
    value = train[0][column]
    return tuple(np.shape(value))


def _classes(config: DatasetConfig, train: Any, label: str) -> tuple[int | None, list[str] | None]:
    feature = train.features[label]
    if _kind(feature) == "class_label":
        return feature.num_classes, list(feature.names)
    values = _table(train).column(label).combine_chunks().to_numpy()
    if not np.issubdtype(values.dtype, np.integer):
        return None, None  # decimals: a regression
    return int(values.max()) + 1, None


def describe(config: DatasetConfig) -> DatasetInfo:
    """Classes from the label's ClassLabel (else the largest label); the shape from the feature column."""
    splits = _open(config.path or "")
    train = _train(config, splits)
    column, label = _columns(config, train)
    kind = _kind(train.features[column])
    num_classes, names = _classes(config, train, label)
    if kind == "text":
        from dltrain.data.text import vector_shape
        shape: tuple[int | None, ...] = vector_shape(config)
    else:
        shape = _shape(train, column, kind)
    return DatasetInfo(Path(config.path or "hf").name, shape, num_classes, names)


def _train(config: DatasetConfig, splits: dict[str, Any]) -> Any:
    name = config.split or "train"
    if name not in splits:
        raise DataError(f"the dataset has no split '{name}'", key="dataset.split" if config.split else "dataset.path",
                        hint=f"its splits: {', '.join(splits)} (choose one with dataset.split)")
    return splits[name]


def _split(config: DatasetConfig, dataset: Any, column: str, label: str, info: DatasetInfo) -> Any:
    """One split of the dataset: streamed from Arrow, or texts in memory."""
    table = _table(dataset)
    y = table.column(label).combine_chunks().to_numpy(zero_copy_only=False)
    y = y.astype(np.int32) if info.num_classes else y.astype(np.float32)
    kind = _kind(dataset.features[column])
    if kind == "text":
        x = table.column(column).combine_chunks().to_numpy(zero_copy_only=False)
        return Split(x.astype(object), y)
    shape = tuple(info.input_shape)
    if kind == "image":
        return ArrowSplit(np.arange(len(y)), y, _Rows(table, column, True, shape), _image_decoder(shape), shape,
                          "uint8", "string")
    rows = _Rows(table, column, False, shape)
    dtype = str(rows(np.array([0])).dtype)
    return ArrowSplit(np.arange(len(y)), y, rows, None, shape, dtype, dtype)


def read(config: DatasetConfig, seed: int) -> Source:
    """The training split, and the DatasetDict's own test and validation splits when it has them."""
    info = describe(config)
    splits = _open(config.path or "")
    train = _train(config, splits)
    column, label = _columns(config, train)
    own = {name: _split(config, splits[name], column, label, info)
           for name in ("test", "validation") if name in splits and name != (config.split or "train")}
    preprocessing = None
    if _kind(train.features[column]) == "text":
        from dltrain.data.text import preprocessing as text_preprocessing
        preprocessing = text_preprocessing(config)
    return Source(_split(config, train, column, label, info), own.get("test"), info, preprocessing,
                  val=own.get("validation"))
