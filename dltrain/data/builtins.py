"""Built-in datasets: read from local folders first, else through Keras's own loaders (a download)."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dltrain.config import DatasetConfig
import dltrain.data.keras_cache as keras_cache
from dltrain.data.keras_cache import Raw
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
_CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The names in cifar-100-python/meta (fine_label_names, coarse_label_names), in label order.
_CIFAR100_FINE = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
    "worm").split()
_CIFAR100_COARSE = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals "
    "trees vehicles_1 vehicles_2").split()
# keras.datasets.reuters.get_label_names(), in label order.
_REUTERS_CLASSES = (
    "cocoa grain veg-oil earn acq wheat copper housing money-supply coffee sugar trade reserves ship cotton "
    "carcass crude nat-gas cpi money-fx interest gnp meal-feed alum oilseed gold tin strategic-metal "
    "livestock retail ipi iron-steel rubber heat jobs lei bop zinc orange pet-chem dlr gas silver wpi hog "
    "lead").split()
# imdb/reuters sequences have every length; the model takes one. Without `maxlen` they are padded or cut
# (keeping the last words, as keras.utils.pad_sequences does) to this length, Keras's IMDB examples' choice.
DEFAULT_MAXLEN = 200
# keras.datasets.california_housing and reuters hold out this fraction for testing unless told otherwise.
KERAS_TEST_SPLIT = 0.2

# Reads a built-in's files from one folder, as keras.datasets' load_data returns them, or None when they
# are not there.
LocalReader = Callable[[Path, DatasetConfig], "Raw | None"]


@dataclass
class Builtin:
    """A built-in dataset: its facts, how to read its files locally, and which files to place where."""

    info: Callable[[DatasetConfig], DatasetInfo]
    read_local: LocalReader
    files: str  # for the hint: the files a user places in a data folder
    # The arguments the config gives keras.datasets.<name>.load_data (the download fallback).
    load_args: Callable[[DatasetConfig], dict] = lambda config: {}


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


def _read_mnist_like(folder: Path, config: DatasetConfig) -> Raw | None:
    if all((folder / f).is_file() for f in _IDX_FILES):
        x_train, y_train, x_test, y_test = (read_idx(folder / f) for f in _IDX_FILES)
        return (x_train, y_train), (x_test, y_test)
    npz = folder / "mnist.npz"  # Keras's own cache file for MNIST (and only for MNIST)
    if config.name == "mnist" and npz.is_file():
        with np.load(npz, allow_pickle=False) as arrays:
            return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
    return None


def _npz_reader(file: str, read: Callable[[Path, DatasetConfig], Raw]) -> LocalReader:
    return lambda folder, config: read(folder / file, config) if (folder / file).is_file() else None


def _sequence_length(config: DatasetConfig) -> int:
    return config.maxlen or DEFAULT_MAXLEN


def _test_split(config: DatasetConfig) -> float:
    return config.test_split or KERAS_TEST_SPLIT


def _sequence_args(config: DatasetConfig) -> dict:
    return {"num_words": config.num_words, "maxlen": config.maxlen}


BUILTINS: dict[str, Builtin] = {
    "mnist": Builtin(lambda c: DatasetInfo("mnist", (28, 28), 10, [str(i) for i in range(10)]),
                     _read_mnist_like, ", ".join(_IDX_FILES) + " (or Keras's mnist.npz)"),
    "fashion_mnist": Builtin(lambda c: DatasetInfo("fashion_mnist", (28, 28), 10, list(_FASHION_CLASSES)),
                             _read_mnist_like, ", ".join(_IDX_FILES)),
    "cifar10": Builtin(lambda c: DatasetInfo("cifar10", (32, 32, 3), 10, list(_CIFAR10_CLASSES)),
                       lambda folder, c: keras_cache.read_cifar10(folder),
                       "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/ folder)"),
    "cifar100": Builtin(
        lambda c: DatasetInfo("cifar100", (32, 32, 3), 100 if c.label_mode == "fine" else 20,
                              list(_CIFAR100_FINE if c.label_mode == "fine" else _CIFAR100_COARSE)),
        lambda folder, c: keras_cache.read_cifar100(folder, c.label_mode),
        "cifar-100-python.tar.gz (or its extracted cifar-100-python/ folder)",
        lambda c: {"label_mode": c.label_mode}),
    "imdb": Builtin(lambda c: DatasetInfo("imdb", (_sequence_length(c),), 2, ["negative", "positive"]),
                    _npz_reader("imdb.npz", lambda path, c: keras_cache.imdb(path, c.num_words, c.maxlen)),
                    "Keras's imdb.npz", _sequence_args),
    "reuters": Builtin(lambda c: DatasetInfo("reuters", (_sequence_length(c),), 46, list(_REUTERS_CLASSES)),
                       _npz_reader("reuters.npz", lambda path, c: keras_cache.reuters(
                           path, c.num_words, c.maxlen, _test_split(c))),
                       "Keras's reuters.npz", lambda c: {**_sequence_args(c), "test_split": _test_split(c)}),
    "california_housing": Builtin(
        lambda c: DatasetInfo("california_housing", (8,), None),
        _npz_reader("california_housing.npz",
                    lambda path, c: keras_cache.california_housing(path, _test_split(c))),
        "Keras's california_housing.npz", lambda c: {"test_split": _test_split(c)}),
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


def _download(config: DatasetConfig) -> Raw:
    import keras

    loader = getattr(keras.datasets, config.name)
    return loader.load_data(**BUILTINS[config.name].load_args(config))


def _splits(config: DatasetConfig, raw: Raw, info: DatasetInfo) -> tuple[Split, Split]:
    """What load_data returned, as dltrain's splits: labels one index per example (CIFAR's are (n, 1)),
    images channels last, sequences padded to one length (with a note on what that kept or cut)."""
    (x_train, y_train), (x_test, y_test) = raw
    y_train, y_test = np.asarray(y_train).reshape(len(y_train)), np.asarray(y_test).reshape(len(y_test))
    if config.name in ("cifar10", "cifar100") and np.shape(x_train)[1:] == (3, 32, 32):
        # Keras's loader follows image_data_format; a channels_first keras.json gives NCHW.
        x_train, x_test = np.transpose(x_train, (0, 2, 3, 1)), np.transpose(x_test, (0, 2, 3, 1))
    if config.name in ("imdb", "reuters"):
        length = _sequence_length(config)
        x_train, x_test = keras_cache.Ragged.of(x_train), keras_cache.Ragged.of(x_test)
        if config.maxlen:
            info.notes.append(f"{config.name}: maxlen {length} keeps the {len(x_train):,} training and "
                              f"{len(x_test):,} test sequences shorter than {length} tokens (Keras's loader "
                              f"leaves longer ones out)")
        else:
            cut = int((x_train.lengths > length).sum() + (x_test.lengths > length).sum())
            if cut:
                info.notes.append(f"{config.name}: {cut:,} of {len(x_train) + len(x_test):,} sequences are "
                                  f"longer than {length} tokens and keep their last {length}; set "
                                  f"dataset.maxlen to choose the length")
        x_train = keras_cache.pad_sequences(x_train, length)
        x_test = keras_cache.pad_sequences(x_test, length)
    return Split(x_train, y_train), Split(x_test, y_test)


def read(config: DatasetConfig, seed: int) -> Source:
    """A built-in's train and test splits, from the first local folder that has its files, else Keras."""
    builtin = BUILTINS[config.name]
    info = builtin.info(config)
    for folder in search_dirs(config.name, config.data_dir):
        found = builtin.read_local(folder, config)
        if found is not None:
            return Source(*_splits(config, found, info), info)
    places = f"${DATA_ENV}/{config.name}/ or /usr/share/datasets/{config.name.replace('_', '-')}/"
    hint = f"place {builtin.files} in {places}"
    if config.name == "fashion_mnist":
        hint += " (on Debian: apt-get install -y dataset-fashion-mnist)"
    if os.environ.get(OFFLINE_ENV) == "1":
        raise DataError(f"dataset '{config.name}' not found locally and downloads are off ({OFFLINE_ENV}=1)",
                        key="dataset.name", hint=hint)
    try:
        raw = _download(config)
    except Exception as error:  # Keras raises a bare Exception for URL failures
        reason = first_line(error, limit=160)
        raise DataError(f"dataset '{config.name}' not found locally and the download failed: {reason}",
                        key="dataset.name", hint=hint) from None
    return Source(*_splits(config, raw, info), info)
