"""Dataset sources become numpy splits, and splits become `tf.data` pipelines."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config import DatasetConfig
from dltrain.errors import DataError, first_line

DATA_ENV = "DLTRAIN_DATA"
# Set to 1 to never try Keras's download (tests, air-gapped machines): fail at once with the hint.
OFFLINE_ENV = "DLTRAIN_OFFLINE"

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass
class DatasetInfo:
    """What the model and the run folder need to know about a dataset."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    class_names: list[str] | None = None
    sizes: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (stored as dataset.json in the run folder)."""
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "class_names": self.class_names, "sizes": self.sizes}


@dataclass
class Split:
    """Features and labels of one split, as numpy arrays."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    """The train, validation (possibly empty) and test splits of a dataset."""

    train: Split
    val: Split | None
    test: Split
    info: DatasetInfo


_BUILTINS = {
    "mnist": DatasetInfo("mnist", (28, 28), 10, [str(i) for i in range(10)]),
    "fashion_mnist": DatasetInfo("fashion_mnist", (28, 28), 10, _FASHION_CLASSES),
}


def describe(config: DatasetConfig) -> DatasetInfo:
    """Facts about a dataset that are known without loading it (for `dltrain check`)."""
    if config.name == "synthetic":
        shape = tuple(config.input_shape or (8,))
        classes = config.num_classes or 2
        return DatasetInfo("synthetic", shape, classes, [f"class_{i}" for i in range(classes)])
    info = _BUILTINS[config.name]
    return DatasetInfo(info.name, info.input_shape, info.num_classes, list(info.class_names or []))


def search_dirs(name: str, data_dir: str | None = None) -> list[Path]:
    """Folders searched, in order, for a built-in dataset's files before Keras downloads them."""
    names = [name, name.replace("_", "-")]
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir))
    if os.environ.get(DATA_ENV):
        roots.append(Path(os.environ[DATA_ENV]))
    roots += [Path("/usr/share/datasets"), Path.home() / ".keras" / "datasets"]
    dirs: list[Path] = []
    for root in roots:
        for sub in dict.fromkeys(names):
            dirs.append(root / sub)
        dirs.append(root)
    return list(dict.fromkeys(dirs))


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"cannot read {path}: {error}", hint="the file may be truncated; download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes", hint="expected the MNIST file format")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} bytes of data, its header says {expected}",
                        hint="the file is truncated or corrupt; download it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _read_local(name: str, folder: Path) -> tuple[Split, Split] | None:
    if all((folder / f).is_file() for f in _IDX_FILES):
        x_train, y_train, x_test, y_test = (read_idx(folder / f) for f in _IDX_FILES)
        return Split(x_train, y_train), Split(x_test, y_test)
    npz = folder / "mnist.npz"  # Keras's own cache file for MNIST (and only for MNIST)
    if name == "mnist" and npz.is_file():
        with np.load(npz, allow_pickle=False) as arrays:
            return Split(arrays["x_train"], arrays["y_train"]), Split(arrays["x_test"], arrays["y_test"])
    return None


def _download(name: str) -> tuple[Split, Split]:
    import keras

    loader = getattr(keras.datasets, name)
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    return Split(x_train, y_train), Split(x_test, y_test)


def _load_builtin(config: DatasetConfig) -> tuple[Split, Split]:
    dirs = search_dirs(config.name, config.data_dir)
    for folder in dirs:
        found = _read_local(config.name, folder)
        if found is not None:
            return found
    files = ", ".join(_IDX_FILES)
    places = f"${DATA_ENV}/{config.name}/ or /usr/share/datasets/{config.name.replace('_', '-')}/"
    hint = f"place {files} in {places}"
    if config.name == "fashion_mnist":
        hint += " (on Debian: apt-get install -y dataset-fashion-mnist)"
    if os.environ.get(OFFLINE_ENV) == "1":
        raise DataError(f"dataset '{config.name}' not found locally and downloads are off ({OFFLINE_ENV}=1)",
                        key="dataset.name", hint=hint)
    try:
        return _download(config.name)
    except Exception as error:  # Keras raises a bare Exception for URL failures
        reason = first_line(error, limit=160)
        raise DataError(f"dataset '{config.name}' not found locally and the download failed: {reason}",
                        key="dataset.name", hint=hint) from None


def _synthetic(config: DatasetConfig, seed: int) -> tuple[Split, Split]:
    """Seeded, learnable random data: each class is a random prototype plus noise."""
    rng = np.random.default_rng(seed)
    info = describe(config)
    prototypes = rng.uniform(0.0, 1.0, size=(info.num_classes, *info.input_shape)).astype("float32")

    def make(count: int) -> Split:
        labels = rng.integers(0, info.num_classes, size=count)
        noise = rng.normal(0.0, 0.25, size=(count, *info.input_shape)).astype("float32")
        return Split(prototypes[labels] + noise, labels.astype("int64"))

    return make(config.train_size or 512), make(config.test_size or 128)


def _check_labels(split: Split, info: DatasetInfo, which: str) -> None:
    if len(split.x) != len(split.y):
        raise DataError(f"{which} split has {len(split.x)} examples but {len(split.y)} labels",
                        key="dataset", hint="features and labels must have the same length")
    if info.num_classes and len(split.y) and (split.y.min() < 0 or split.y.max() >= info.num_classes):
        raise DataError(f"{which} labels range over {split.y.min()}..{split.y.max()}, "
                        f"outside 0..{info.num_classes - 1}", key="dataset")


def load(config: DatasetConfig, seed: int) -> Splits:
    """Load a dataset and carve a validation split from its training split, deterministically from `seed`."""
    info = describe(config)
    if config.name == "synthetic":
        train, test = _synthetic(config, seed)
    else:
        train, test = _load_builtin(config)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    if config.train_size is not None and config.name != "synthetic":
        order = order[: config.train_size]
    n_val = int(round(len(order) * config.validation_split))
    # Sorted indices keep the copies cache-friendly; tf.data shuffles the training split anyway.
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    val = Split(train.x[val_idx], train.y[val_idx]) if n_val else None
    train = Split(train.x[train_idx], train.y[train_idx])
    if config.test_size is not None and config.name != "synthetic":
        test = Split(test.x[: config.test_size], test.y[: config.test_size])
    if len(train) == 0:
        raise DataError("the training split is empty", key="dataset.validation_split",
                        hint="lower validation_split or raise train_size")
    for which, split in (("train", train), ("validation", val), ("test", test)):
        if split is not None:
            _check_labels(split, info, which)
    info.input_shape = tuple(train.x.shape[1:])
    info.sizes = {"train": len(train), "validation": len(val) if val else 0, "test": len(test)}
    return Splits(train, val, test, info)


def cache_file(prefix: str, name: str, split: Split, batch_size: int) -> str:
    """The tf.data cache file for one split: named after its content, so a changed split never reads stale data."""
    digest = hashlib.blake2b(digest_size=8)
    for array in (split.x, split.y):
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    digest.update(str(batch_size).encode())
    return f"{prefix}{name}-{digest.hexdigest()}"


def to_dataset(split: Split, batch_size: int, *, shuffle: bool = False, buffer: int | None = None,
               seed: int | None = None, cache: bool | str = False) -> Any:
    """A batched, prefetched `tf.data.Dataset` over one split; `cache` True (memory) or a file name."""
    import tensorflow as tf

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
