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

    def pick(self, name: str, key: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(train, test) for `name`: `name_train` and `name_test` if present, else `name` and no test."""
        if f"{name}_train" in self.names:
            test = self[f"{name}_test"] if f"{name}_test" in self.names else None
            return self[f"{name}_train"], test
        if name in self.names:
            return self[name], None
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


def _read(config: DatasetConfig) -> tuple[Source, list[str]]:
    arrays = _Arrays(config)
    names = _feature_names(config)
    picked = {name: arrays.pick(name, "features") for name in names}
    y_train, y_test = arrays.pick(config.label or "y", "label")
    has_test = [test is not None for _, test in picked.values()] + [y_test is not None]
    if any(has_test) and not all(has_test):
        raise DataError(f"{arrays.path} has test arrays for some of {', '.join([*names, config.label or 'y'])} "
                        "but not all", key="dataset.features", hint="give every array a _test part, or none")
    y_train, y_test, classes, class_names = _labels(config, np.asarray(y_train), None if y_test is None
                                                    else np.asarray(y_test))

    def features(part: int) -> np.ndarray | dict[str, np.ndarray]:
        found = {name: np.asarray(pair[part]) for name, pair in picked.items()}
        return found[names[0]] if len(names) == 1 else found

    train = Split(features(0), y_train)
    test = Split(features(1), y_test) if y_test is not None else None
    first = picked[names[0]][0]
    info = DatasetInfo(arrays.path.stem, tuple(first.shape[1:]), classes, class_names,
                       features=names if len(names) > 1 else None)
    return Source(train, test, info), names


def describe(config: DatasetConfig) -> DatasetInfo:
    """The feature shape, class count and names, read off the arrays."""
    return _read(config)[0].info


def read(config: DatasetConfig, seed: int) -> Source:
    """All the arrays, in memory."""
    return _read(config)[0]
