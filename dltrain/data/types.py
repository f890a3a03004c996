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
    # False for texts without labels (JSON lines without `label`): a causal LM trains on the texts alone.
    labelled: bool = True

    @property
    def task(self) -> str:
        """"classification" when the labels are class indices, "unlabelled" for texts alone, else "regression"."""
        return "classification" if self.num_classes else "regression" if self.labelled else "unlabelled"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (stored as dataset.json in the run folder)."""
        return {"name": self.name, "task": self.task, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "class_names": self.class_names, "features": self.features,
                "sizes": self.sizes, "notes": self.notes}


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
    """

    paths: np.ndarray
    y: np.ndarray
    read: Callable[[Any], Any]
    element_shape: tuple[int, ...]
    dtype: str = "uint8"

    def __len__(self) -> int:
        return len(self.y)

    @property
    def nbytes(self) -> int:
        """The bytes of all its examples once decoded (what a memory cache holds)."""
        return len(self) * int(np.prod(self.element_shape)) * np.dtype(self.dtype).itemsize

    def take(self, index: Any) -> FileSplit:
        """The examples at `index` (an index array or a slice)."""
        return FileSplit(self.paths[index], self.y[index], self.read, self.element_shape, self.dtype)


AnySplit = Split | FileSplit
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


@dataclass
class Splits:
    """The train, validation (possibly absent) and test splits of a dataset."""

    train: AnySplit
    val: AnySplit | None
    test: AnySplit
    info: DatasetInfo
    preprocessing: Preprocessing | None = None
