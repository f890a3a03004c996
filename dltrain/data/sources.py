"""Which module reads a dataset, and how its examples become train, validation and test splits."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from dltrain.config import BUILTIN_NAMES, DEFAULT_TEST_SPLIT, FORMATS, DatasetConfig, SourceConfig
from dltrain.data.folds import split_fold, stratifiable
from dltrain.data.types import AnySplit, ArrowSplit, DatasetInfo, FileSplit, RecordSplit, Source, Split, Splits, feature_count
from dltrain.errors import DataError

# Each module has `describe(config) -> DatasetInfo` (cheap: no full read) and `read(config, seed) -> Source`.
_MODULES = {
    **{name: "builtins" for name in BUILTIN_NAMES},
    "synthetic": "synthetic",
    "npz": "arrays", "npy": "arrays",
    "csv": "tabular", "parquet": "tabular",
    "images": "images",
    "text": "text",
    "audio": "audio",
    "jsonl": "jsonl",
    "tfds": "tfds",
    "timeseries": "timeseries",
    "tfrecord": "records",
    "hf": "hf",
}
# Sources whose path is not one file or folder: a glob of shards, a Hugging Face hub name (their modules check it).
_OWN_PATHS = ("tfrecord", "hf")


def source_module(config: DatasetConfig) -> ModuleType:
    """The module that reads this dataset; a missing path or an unknown format is an error here."""
    if config.path is not None and config.kind not in _OWN_PATHS and not Path(config.path).exists():
        raise DataError(f"dataset path '{config.path}' not found", key="dataset.path",
                        hint="check the path; a relative path is read from the working folder")
    kind = config.kind  # a folder's format is read off its files: once
    if not kind:
        raise DataError(f"cannot tell the format of '{config.path}'", key="dataset.path",
                        hint=f"add 'format:' under 'dataset', one of: {', '.join(FORMATS)}")
    if kind == "images" and config.masks is not None:  # segmentation: images and their masks
        return importlib.import_module("dltrain.data.masks")
    return importlib.import_module(f"dltrain.data.{_MODULES[kind]}")


def describe(config: DatasetConfig) -> DatasetInfo:
    """Facts about a dataset that are known without loading it all (for `dltrain check` and `${dataset.*}`)."""
    return source_module(config).describe(config)


def _nested(config: DatasetConfig, source: SourceConfig) -> DatasetConfig:
    """An explicit validation or test source: the dataset's settings, with its path and the keys it sets."""
    return config.model_copy(update={**source.settings(), "validation": None, "test": None, "test_split": None})


def _read_other(config: DatasetConfig, source: SourceConfig, which: str, seed: int, info: DatasetInfo) -> AnySplit:
    other = _nested(config, source)
    if info.multi_label:  # the training tags, in their order: another tag there is an error naming its row
        other = other.model_copy(update={"class_names": info.class_names})
    if info.masks:  # the training masks' classes: a test folder need not show every one of them
        other = other.model_copy(update={"num_classes": info.num_classes})
    try:
        read = source_module(other).read(other, seed)
    except DataError as error:
        error.key = f"dataset.{which}"
        raise
    if info.class_names and read.info.class_names and read.info.class_names != info.class_names:
        raise DataError(f"the {which} source's classes ({', '.join(read.info.class_names)}) differ from the "
                        f"training classes ({', '.join(info.class_names)})", key=f"dataset.{which}",
                        hint="both sources need the same class folders (or the same label values)")
    _check_lengths(read.train, which)
    return read.train


def same_test_split(config: DatasetConfig, started: dict[str, Any]) -> None:
    """Give `config` the test_split a run wrote for its source without one (DEFAULT_TEST_SPLIT) when `config`
    leaves it out: both mean the same split, and a resume compares the two configs."""
    if config.test is None and config.test_split is None and config.kind not in BUILTIN_NAMES \
            and started.get("test_split") == DEFAULT_TEST_SPLIT:
        config.test_split = DEFAULT_TEST_SPLIT


def _carve_files(split: RecordSplit, fraction: float, rng: np.random.Generator, which: str,
                 info: DatasetInfo) -> tuple[RecordSplit, RecordSplit | None]:
    """(rest, carved): whole shards, `fraction` of them (at least one while one is left), drawn with `rng`."""
    count = len(split.files)
    if fraction <= 0:
        return split, None
    n = min(count - 1, max(1, int(round(count * fraction))))
    if n < 1:
        info.notes.append(f"{which}_split {fraction}: '{info.name}' is {count} shard, and splits are cut by whole "
                          f"shards: no {which} split (give a dataset.{which} source, or more shards)")
        return split, None
    order = rng.permutation(count)
    carved = split.shards(np.sort(order[:n]))
    info.notes.append(f"{which}_split {fraction}: {n} of {count} shards ({len(carved):,} examples), cut by whole files")
    return split.shards(np.sort(order[n:])), carved


def _carve(split: AnySplit, fraction: float, rng: np.random.Generator, which: str = "",
           info: DatasetInfo | None = None) -> tuple[AnySplit, AnySplit | None]:
    """(rest, carved): `fraction` of `split`'s examples drawn with `rng`; both keep their stored order."""
    if isinstance(split, RecordSplit):
        return _carve_files(split, fraction, rng, which, info)
    order = rng.permutation(len(split))
    n = int(round(len(order) * fraction))
    if not n:
        return split, None
    # Sorted indices keep the copies cache-friendly; training shuffles anyway.
    return split.take(np.sort(order[n:])), split.take(np.sort(order[:n]))


def _check_lengths(split: AnySplit, which: str) -> None:
    """Features and labels must pair up before any split is carved (carving would hide a mismatch)."""
    if isinstance(split, (RecordSplit, ArrowSplit)):
        return  # its labels were read from its records or rows, one each
    count = len(split.paths) if isinstance(split, FileSplit) else feature_count(split.x)
    if count != len(split.y):
        raise DataError(f"the {which} split has {count} examples but {len(split.y)} labels", key="dataset",
                        hint="features and labels must have the same length")
    if isinstance(split, Split) and isinstance(split.x, dict):
        lengths = {name: len(array) for name, array in split.x.items()}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{name}: {n}" for name, n in lengths.items())
            raise DataError(f"the {which} split's features have different lengths ({listed})", key="dataset.features",
                            hint="every named feature array needs one row per example")


def _check_labels(split: AnySplit, info: DatasetInfo, which: str) -> None:
    y = split.y
    if info.num_classes and not info.multi_label and len(y) and np.issubdtype(y.dtype, np.number) \
            and (y.min() < 0 or y.max() >= info.num_classes):
        raise DataError(f"{which} labels range over {y.min()}..{y.max()}, outside 0..{info.num_classes - 1}",
                        key="dataset", hint=f"the dataset has {info.num_classes} classes; labels must be 0.."
                                            f"{info.num_classes - 1}")


def _ordered(source: Source, config: DatasetConfig) -> Splits:
    """The splits a source cut itself in time order: `train_size` and `test_size` keep their first windows."""
    train, val, test, info = source.train, source.val, source.test, source.info
    if config.train_size is not None:
        train = train.take(slice(0, config.train_size))
    if config.test_size is not None:
        test = test.take(slice(0, config.test_size))
    info.sizes = {"train": len(train), "validation": len(val) if val is not None else 0, "test": len(test)}
    return Splits(train, val, test, info, source.preprocessing)


def _fold(train: AnySplit, config: DatasetConfig, seed: int, info: DatasetInfo) -> tuple[AnySplit, AnySplit]:
    """(training, validation) of the config's cross-validation fold; an empty fold is an error."""
    index, folds = config.fold.index, config.fold.folds
    if isinstance(train, RecordSplit):  # a shard is read from its first record on: no example can be picked out
        raise DataError(f"'{info.name}' is read as whole TFRecord shards; a cross-validation fold picks examples one "
                        "by one", key="dataset.fold", hint="write one shard folder per fold and train on each")
    if len(train) < folds:
        raise DataError(f"the training split has {len(train)} examples, too few for {folds} folds",
                        key="dataset.fold.folds", hint="use fewer folds, or more examples")
    stratified = stratifiable(train.y, info.num_classes)
    info.fold = {"index": index, "folds": folds, "stratified": stratified}
    return split_fold(train, index, folds, seed, info.num_classes)


def load(config: DatasetConfig, seed: int) -> Splits:
    """Read a dataset and split it: test and validation examples are carved deterministically from `seed`
    (`test_split`, `validation_split` or a cross-validation `fold`), or read from explicit `test:` and
    `validation:` sources."""
    source = source_module(config).read(config, seed)
    if source.ordered:
        if config.fold is not None:  # a shuffled fold would validate on rows before the ones trained on
            raise DataError(f"'{source.info.name}' is split in time order; cross-validation folds would train on "
                            "rows after the ones they validate on", key="dataset.fold",
                            hint="use dltrain train: its validation part is the rows before the test part")
        return _ordered(source, config)
    kind = config.kind
    info, train, test = source.info, source.train, source.test
    for which, split in (("train", train), ("test", test)):
        if split is not None:
            _check_lengths(split, which)
    if config.train_size is not None and isinstance(train, RecordSplit):
        train = train.take(slice(0, config.train_size))  # streamed: the first records, not a random draw
    elif config.train_size is not None and kind != "synthetic":
        keep = np.sort(np.random.default_rng(seed).permutation(len(train))[: config.train_size])
        train = train.take(keep)
    if config.test is not None:
        test = _read_other(config, config.test, "test", seed, info)
    elif kind not in BUILTIN_NAMES and (config.test_split is not None or test is None):
        # (A built-in that takes test_split, california_housing and reuters, passed it to Keras's own split.)
        if test is not None:
            raise DataError(f"'{info.name}' has its own test split; test_split would carve another",
                            key="dataset.test_split", hint="remove test_split")
        fraction = config.test_split or DEFAULT_TEST_SPLIT
        train, test = _carve(train, fraction, np.random.default_rng([seed, 1]), "test", info)
        if config.test_split is None and test is not None:
            info.notes.append(f"'{info.name}' has no test split of its own: test_split {fraction} of it is carved "
                              "from the seed (set dataset.test_split, or a dataset.test source, to choose)")
            info.test_split = fraction
    if test is None:
        raise DataError(f"'{info.name}' has {len(train)} examples, too few to carve a test split from", key="dataset",
                        hint="add examples, or a 'test:' source with its own path")
    if config.validation is not None:
        val = _read_other(config, config.validation, "validation", seed, info)
    elif config.fold is not None:
        train, val = _fold(train, config, seed, info)
    elif source.val is not None and "validation_split" not in config.model_fields_set:
        val = source.val
    else:
        train, val = _carve(train, config.validation_split, np.random.default_rng(seed), "validation", info)
    if config.test_size is not None and kind != "synthetic":
        test = test.take(slice(0, config.test_size))
    if len(train) == 0:
        raise DataError("the training split is empty", key="dataset.validation_split",
                        hint="lower validation_split or raise train_size")
    for which, split in (("train", train), ("validation", val), ("test", test)):
        if split is not None:
            _check_labels(split, info, which)
    if source.preprocessing is None and isinstance(train, Split) and not isinstance(train.x, dict):
        info.input_shape = tuple(train.x.shape[1:])
    info.sizes = {"train": len(train), "validation": len(val) if val is not None else 0, "test": len(test)}
    return Splits(train, val, test, info, source.preprocessing)


def _raw(split: AnySplit | None) -> AnySplit | None:
    """One split's examples as a KerasHub task takes them: a table's one text column as a (n,) array of str."""
    if not isinstance(split, Split) or not isinstance(split.x, dict):
        return split
    if len(split.x) != 1:
        raise DataError(f"a KerasHub task takes one input; the dataset gives the features {', '.join(split.x)}",
                        key="dataset.features", hint="name the one text column, e.g. features: review")
    (column,) = split.x.values()
    if column.dtype.kind not in "USO":
        raise DataError("a KerasHub task takes raw texts or images; the feature column holds numbers",
                        key="dataset.features", hint="name a text column")
    texts = np.empty(len(column), dtype=object)
    texts[:] = [str(v) for v in column.reshape(len(column), -1)[:, 0]]
    return Split(texts, split.y)


def raw_splits(splits: Splits) -> Splits:
    """The splits as a KerasHub task takes them: strings and uint8 images, without dltrain's own
    preprocessing (no TextVectorization is adapted: the task's preprocessor tokenizes)."""
    info = splits.info
    info.features = None
    return Splits(_raw(splits.train), _raw(splits.val), _raw(splits.test), info, None)
