"""What a dataset source gives: splits held in memory or streamed from files, and facts about them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

# Features: one array, or named arrays (one per model input, or one per CSV column).
Features = np.ndarray | dict[str, np.ndarray]


@dataclass
class DatasetInfo:
    """What the model and the run folder need to know about a dataset."""

    name: str
    # The shape of one example as the model's layers see it (after any preprocessing saved in the model).
    input_shape: tuple[int | None, ...]
    num_classes: int | None
    class_names: list[str] | None = None
    sizes: dict[str, int] = field(default_factory=dict)
    # The raw inputs of a dataset with named features (CSV columns, named arrays); None for one array.
    features: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    # The test_split carved because the config gave none and the source has no test split (the run's
    # config.yaml records it); None otherwise.
    test_split: float | None = None
    # training.class_weight as fit applies it, by class name (or index): written to dataset.json.
    class_weight: dict[str, float] | None = None
    # Multi-hot labels: each of the num_classes tags is on or off (a sigmoid per class), not one class of many.
    multi_label: bool = False
    # A time series: the feature and label columns and the window settings that predict needs to cut windows.
    series: dict[str, Any] | None = None
    # The cross-validation fold the validation split is ({index, folds, stratified}); None without one.
    fold: dict[str, Any] | None = None

    # Segmentation: each example's label is a mask (a class index per pixel), not one class.
    masks: bool = False
    # Audio: the sampling rate of every file (predict checks a .wav file against it).
    sampling_rate: int | None = None

    # False for texts without labels (JSON lines without `label`): a causal LM trains on the texts alone.
    labelled: bool = True

    @property
    def task(self) -> str:
        """"segmentation" for masks, "multilabel" for multi-hot labels, "classification" when the labels are
        class indices, "unlabelled" for texts alone (a causal LM's), else "regression" (forecasts included)."""
        if self.masks:
            return "segmentation"
        if self.multi_label:
            return "multilabel"
        return "classification" if self.num_classes else "regression" if self.labelled else "unlabelled"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (stored as dataset.json in the run folder)."""
        described = {"name": self.name, "task": self.task, "input_shape": list(self.input_shape),
                     "num_classes": self.num_classes, "class_names": self.class_names, "features": self.features,
                     "sizes": self.sizes, "notes": self.notes}
        if self.class_weight is not None:
            described["class_weight"] = self.class_weight
        if self.series is not None:
            described["series"] = self.series
        if self.fold:
            described["fold"] = self.fold
        if self.sampling_rate is not None:
            described["sampling_rate"] = self.sampling_rate
        return described


def take_features(x: Features, index: Any) -> Features:
    """Rows `index` of one feature array or of each named array."""
    return {name: array[index] for name, array in x.items()} if isinstance(x, dict) else x[index]


def feature_count(x: Features) -> int:
    """The number of examples in one feature array or in named arrays (all the same length)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


@dataclass
class Split:
    """Features and labels of one split, held in memory."""

    x: Features
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: Any) -> Split:
        """The examples at `index` (an index array or a slice)."""
        return Split(take_features(self.x, index), self.y[index])


@dataclass
class FileSplit:
    """A split streamed from disk, one file per example: only the file list and labels are in memory.

    `read` turns a scalar string tensor (a path) into one example tensor; it runs inside `tf.data`, in
    parallel, so it must use TensorFlow ops only. `element_shape` and `dtype` describe what it returns.
    With `read_y` the labels are files too (segmentation masks): `y` holds their paths, and `read_y` reads
    one into a label of `y_shape` and `y_dtype`.
    """

    paths: np.ndarray
    y: np.ndarray
    read: Callable[[Any], Any]
    element_shape: tuple[int, ...]
    dtype: str = "uint8"
    read_y: Callable[[Any], Any] | None = None
    y_shape: tuple[int, ...] = ()
    y_dtype: str = "int32"

    def __len__(self) -> int:
        return len(self.y)

    @property
    def nbytes(self) -> int:
        """The bytes of all its examples once decoded (what a memory cache holds)."""
        label = int(np.prod(self.y_shape)) * np.dtype(self.y_dtype).itemsize if self.read_y is not None else 0
        return len(self) * (int(np.prod(self.element_shape)) * np.dtype(self.dtype).itemsize + label)

    def take(self, index: Any) -> FileSplit:
        """The examples at `index` (an index array or a slice)."""
        return FileSplit(self.paths[index], self.y[index], self.read, self.element_shape, self.dtype,
                         self.read_y, self.y_shape, self.y_dtype)


@dataclass
class RecordSplit:
    """A split streamed from TFRecord shards: only the shard list, each shard's record count and the labels
    are in memory. A shard is read from its first record to `stops[i]`, leaving out the record numbers in
    `skips[i]` (damaged records, with skip_damaged). `parse` turns one serialized `tf.train.Example` into
    (example, label) with TensorFlow ops only (images decoded there)."""

    files: list[str]
    stops: np.ndarray
    y: np.ndarray
    parse: Callable[[Any], Any]
    element_shape: tuple[int, ...]
    dtype: str = "uint8"
    skips: dict[int, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def nbytes(self) -> int:
        """The bytes of all its examples once decoded (what a memory cache holds)."""
        return len(self) * int(np.prod(self.element_shape)) * np.dtype(self.dtype).itemsize

    @property
    def counts(self) -> np.ndarray:
        """The examples each shard gives."""
        return np.array([int(stop) - len(self.skips.get(i, ())) for i, stop in enumerate(self.stops)], dtype=np.int64)

    def shards(self, index: Any) -> RecordSplit:
        """The split of the shards at `index` (whole files), in that order."""
        index = [int(i) for i in index]
        starts = np.concatenate([[0], np.cumsum(self.counts)])
        y = np.concatenate([self.y[starts[i]: starts[i + 1]] for i in index]) if index else self.y[:0]
        return RecordSplit([self.files[i] for i in index], self.stops[index], y, self.parse, self.element_shape,
                           self.dtype, {new: self.skips[old] for new, old in enumerate(index) if old in self.skips})

    def take(self, index: Any) -> RecordSplit:
        """The first examples (`slice(0, n)`): records are streamed, so a subset is a prefix of the shards."""
        if not isinstance(index, slice) or index.start not in (None, 0) or index.step not in (None, 1):
            raise TypeError("a RecordSplit takes a prefix slice(0, n) only")
        wanted = min(len(self), index.stop if index.stop is not None else len(self))
        stops, left = [], wanted
        for i, stop in enumerate(self.stops):
            skipped = self.skips.get(i, np.empty(0, np.int64))
            if left <= 0:
                break
            count = int(stop) - len(skipped)
            if count <= left:
                stops.append(int(stop))
                left -= count
                continue
            # The record number after which `left` good records have been read.
            good = np.setdiff1d(np.arange(int(stop)), skipped)
            stops.append(int(good[left - 1]) + 1)
            left = 0
        kept = len(stops)
        return RecordSplit(self.files[:kept], np.array(stops, dtype=np.int64), self.y[:wanted], self.parse,
                           self.element_shape, self.dtype,
                           {i: s[s < stops[i]] for i, s in self.skips.items() if i < kept})


@dataclass
class ArrowSplit:
    """A split streamed from a Hugging Face dataset's memory-mapped Arrow table: only row numbers and labels
    are in memory. `rows(index)` gives the feature of those rows as one NumPy array (encoded image bytes, or
    numbers read from Arrow without copying); `decode` (TF ops only) turns one value into an example."""

    index: np.ndarray
    y: np.ndarray
    rows: Callable[[np.ndarray], np.ndarray]
    decode: Callable[[Any], Any] | None
    element_shape: tuple[int, ...]
    dtype: str
    raw_dtype: str  # what `rows` gives: "string" (encoded images) or a number type

    def __len__(self) -> int:
        return len(self.y)

    @property
    def nbytes(self) -> int:
        """The bytes of all its examples once decoded (what a memory cache holds)."""
        return len(self) * int(np.prod(self.element_shape)) * np.dtype(self.dtype).itemsize

    def take(self, index: Any) -> ArrowSplit:
        """The examples at `index` (an index array or a slice)."""
        return ArrowSplit(self.index[index], self.y[index], self.rows, self.decode, self.element_shape, self.dtype,
                          self.raw_dtype)


AnySplit = Split | FileSplit | RecordSplit | ArrowSplit
# Splits streamed from files (decoded on the way into fit), as opposed to arrays in memory.
Streamed = (FileSplit, RecordSplit, ArrowSplit)
# Given the training split, returns (the model's raw inputs, the tensor the config's layers take):
# Keras preprocessing layers adapted on that split, so that the saved model takes raw examples.
Preprocessing = Callable[[Split], tuple[Any, Any]]


@dataclass
class Source:
    """What a source module reads: the training examples, its own test split if it has one, and facts."""

    train: AnySplit
    test: AnySplit | None
    info: DatasetInfo
    preprocessing: Preprocessing | None = None
    # A validation split of its own (a Hugging Face DatasetDict's "validation"), used unless the config sets one;
    # a source split in time order has cut its own validation split (None: none) and nothing is carved from it.
    val: AnySplit | None = None
    ordered: bool = False


@dataclass
class Splits:
    """The train, validation (possibly absent) and test splits of a dataset."""

    train: AnySplit
    val: AnySplit | None
    test: AnySplit
    info: DatasetInfo
    preprocessing: Preprocessing | None = None
