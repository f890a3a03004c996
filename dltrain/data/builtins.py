"""Built-in datasets: read from local folders first, else through Keras's own loaders (a download)."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dltrain.config import DatasetConfig
from dltrain.data.types import DatasetInfo, Source, Split
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

# Reads a built-in's files from one folder: (train, test), or None when they are not there.
LocalReader = Callable[[Path, DatasetConfig], "tuple[Split, Split] | None"]


@dataclass
class Builtin:
    """A built-in dataset: its facts, how to read its files locally, and which files to place where."""

    info: Callable[[DatasetConfig], DatasetInfo]
    read_local: LocalReader
    files: str  # for the hint: the files a user places in a data folder


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


def _read_mnist_like(folder: Path, config: DatasetConfig) -> tuple[Split, Split] | None:
    if all((folder / f).is_file() for f in _IDX_FILES):
        x_train, y_train, x_test, y_test = (read_idx(folder / f) for f in _IDX_FILES)
        return Split(x_train, y_train), Split(x_test, y_test)
    npz = folder / "mnist.npz"  # Keras's own cache file for MNIST (and only for MNIST)
    if config.name == "mnist" and npz.is_file():
        with np.load(npz, allow_pickle=False) as arrays:
            return Split(arrays["x_train"], arrays["y_train"]), Split(arrays["x_test"], arrays["y_test"])
    return None


BUILTINS: dict[str, Builtin] = {
    "mnist": Builtin(lambda c: DatasetInfo("mnist", (28, 28), 10, [str(i) for i in range(10)]),
                     _read_mnist_like, ", ".join(_IDX_FILES) + " (or Keras's mnist.npz)"),
    "fashion_mnist": Builtin(lambda c: DatasetInfo("fashion_mnist", (28, 28), 10, list(_FASHION_CLASSES)),
                             _read_mnist_like, ", ".join(_IDX_FILES)),
}


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


def describe(config: DatasetConfig) -> DatasetInfo:
    """A built-in's facts, known without reading it."""
    return BUILTINS[config.name].info(config)


def _download(config: DatasetConfig) -> tuple[Split, Split]:
    import keras

    loader = getattr(keras.datasets, config.name)
    (x_train, y_train), (x_test, y_test) = loader.load_data()
    return Split(x_train, y_train), Split(x_test, y_test)


def read(config: DatasetConfig, seed: int) -> Source:
    """A built-in's train and test splits, from the first local folder that has its files, else Keras."""
    builtin = BUILTINS[config.name]
    info = builtin.info(config)
    for folder in search_dirs(config.name, config.data_dir):
        found = builtin.read_local(folder, config)
        if found is not None:
            return Source(found[0], found[1], info)
    places = f"${DATA_ENV}/{config.name}/ or /usr/share/datasets/{config.name.replace('_', '-')}/"
    hint = f"place {builtin.files} in {places}"
    if config.name == "fashion_mnist":
        hint += " (on Debian: apt-get install -y dataset-fashion-mnist)"
    if os.environ.get(OFFLINE_ENV) == "1":
        raise DataError(f"dataset '{config.name}' not found locally and downloads are off ({OFFLINE_ENV}=1)",
                        key="dataset.name", hint=hint)
    try:
        train, test = _download(config)
    except Exception as error:  # Keras raises a bare Exception for URL failures
        reason = first_line(error, limit=160)
        raise DataError(f"dataset '{config.name}' not found locally and the download failed: {reason}",
                        key="dataset.name", hint=hint) from None
    return Source(train, test, info)
