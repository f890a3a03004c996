"""`npz` and `npy` sources: named arrays, in one .npz file or as a folder of .npy files (one per array).

Features default to the array `x` and labels to `y`; `x_train`/`x_test` (Keras's own naming) give the
train and test splits, else the whole array is training data and `test_split` or `test:` gives the test split.
Several feature names give a model with one named input per array.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dltrain.config import DatasetConfig, did_you_mean
from dltrain.data.types import DatasetInfo, Source, Split
from dltrain.errors import DataError


class _Arrays:
    """The arrays of an .npz file or of a folder of .npy files, read one at a time."""

    def __init__(self, config: DatasetConfig) -> None:
        self.path = Path(config.path or "")
        self.folder = self.path.is_dir()
        try:
            self.npz = None if self.folder else np.load(self.path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read {self.path}: {error}", key="dataset.path",
                            hint="expected an .npz file written by numpy.savez") from None
        if self.npz is not None and not hasattr(self.npz, "files"):
            raise DataError(f"{self.path} holds one array, not named arrays", key="dataset.path",
                            hint="save features and labels with numpy.savez(path, x=..., y=...)")
        self.names = sorted(p.stem for p in self.path.glob("*.npy")) if self.folder else list(self.npz.files)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            if self.folder:
                return np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            return self.npz[name]
        except ValueError as error:  # object arrays need pickle, which we never allow
            raise DataError(f"cannot read array '{name}' of {self.path}: {error}", key="dataset.path",
                            hint="store numbers or fixed-width strings, not Python objects") from None

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of array `name`, read from its header (an .npz member is not decompressed)."""
        if self.folder:
            return self[name].shape  # memory-mapped: nothing is read
        with self.npz.zip.open(f"{name}.npy") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(handle)[0]
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(handle)[0]
        return self[name].shape  # a newer header version: read the array

    def parts(self, name: str, key: str) -> tuple[str, str | None]:
        """The arrays holding `name`'s train and test parts: `name_train` and `name_test` if present, else
        `name` and no test."""
        if f"{name}_train" in self.names:
            return f"{name}_train", f"{name}_test" if f"{name}_test" in self.names else None
        if name in self.names:
            return name, None
        listed = ", ".join(self.names) or "none"
        hint = did_you_mean(name, self.names) or f"the arrays are: {listed}"
        raise DataError(f"{self.path} has no array '{name}' (nor '{name}_train')", key=f"dataset.{key}", hint=hint)


def _feature_names(config: DatasetConfig) -> list[str]:
    features = config.features if config.features is not None else "x"
    return [features] if isinstance(features, str) else list(features)


def _labels(config: DatasetConfig, y_train: np.ndarray, y_test: np.ndarray | None
            ) -> tuple[np.ndarray, np.ndarray | None, int | None, list[str] | None]:
    """Labels as the model takes them, the class count and class names (None for regression)."""
    both = y_train if y_test is None else np.concatenate([y_train, y_test])
    task = config.task or ("regression" if np.issubdtype(both.dtype, np.floating) else "classification")
    if task == "regression":
        if not np.issubdtype(both.dtype, np.number):
            raise DataError(f"regression labels must be numbers, got {both.dtype} values", key="dataset.label",
                            hint="set task: classification for labels that are class names")
        return y_train.astype("float32"), None if y_test is None else y_test.astype("float32"), None, None
    if np.issubdtype(both.dtype, np.number):
        if np.issubdtype(both.dtype, np.floating) and not np.all(np.mod(both, 1) == 0):
            raise DataError("classification labels must be whole numbers (class indices)", key="dataset.label",
                            hint="set task: regression to predict these values")
        classes = int(both.max()) + 1 if len(both) else 0
        if len(both) and both.min() < 0:
            raise DataError(f"labels range over {both.min()}..{both.max()}: class indices start at 0",
                            key="dataset.label", hint="shift the labels to 0..number of classes - 1")
        return (y_train.astype("int64"), None if y_test is None else y_test.astype("int64"), max(classes, 2),
                [str(i) for i in range(max(classes, 2))])
    names = sorted({str(v) for v in both})  # class names as labels: indices in sorted order
    index = {name: i for i, name in enumerate(names)}

    def encode(y: np.ndarray) -> np.ndarray:
        return np.array([index[str(v)] for v in y], dtype="int64")

    return encode(y_train), None if y_test is None else encode(y_test), len(names), names


class _Layout:
    """Which arrays hold the features and the labels, and the labels as the model takes them."""

    def __init__(self, config: DatasetConfig) -> None:
        self.arrays = _Arrays(config)
        self.names = _feature_names(config)
        self.features = {name: self.arrays.parts(name, "features") for name in self.names}
        label = config.label or "y"
        y_train, y_test = self.arrays.parts(label, "label")
        has_test = [test is not None for _, test in self.features.values()] + [y_test is not None]
        if any(has_test) and not all(has_test):
            raise DataError(f"{self.arrays.path} has test arrays for some of {', '.join([*self.names, label])} "
                            "but not all", key="dataset.features", hint="give every array a _test part, or none")
        self.y_train, self.y_test, classes, class_names = _labels(
            config, np.asarray(self.arrays[y_train]), None if y_test is None else np.asarray(self.arrays[y_test]))
        first = self.features[self.names[0]][0]
        self.info = DatasetInfo(self.arrays.path.stem, tuple(self.arrays.shape(first)[1:]), classes, class_names,
                                features=self.names if len(self.names) > 1 else None)

    def x(self, part: int) -> np.ndarray | dict[str, np.ndarray]:
        """The train (0) or test (1) features: one array, or named arrays."""
        found = {name: np.asarray(self.arrays[pair[part]]) for name, pair in self.features.items()}
        return found[self.names[0]] if len(self.names) == 1 else found


def describe(config: DatasetConfig) -> DatasetInfo:
    """The feature shape (from the array header), class count and names (from the labels)."""
    return _Layout(config).info


def read(config: DatasetConfig, seed: int) -> Source:
    """All the arrays, in memory."""
    layout = _Layout(config)
    test = Split(layout.x(1), layout.y_test) if layout.y_test is not None else None
    return Source(Split(layout.x(0), layout.y_train), test, layout.info)
