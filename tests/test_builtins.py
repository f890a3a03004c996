"""The built-in datasets (cifar10, cifar100, imdb, reuters, california_housing) on small files in Keras's own
on-disk formats, written here: the arrays must equal what Keras's loaders make of the same files."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CONFIGS, SYNTHETIC
from dltrain import data
from dltrain.config import DatasetConfig
from dltrain.load import load_config
from dltrain.data import builtins, keras_cache
from dltrain.errors import ConfigError, DataError

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_batch(rng: np.random.Generator, count: int, **labels: list[int]) -> bytes:
    """One CIFAR batch as the real files hold it: a pickled dict with byte-string keys, rows of 3,072 bytes
    (red, green, blue planes). Protocol 3 stores bytes as the Python 2 originals do (no _codecs call)."""
    batch = {b"batch_label": b"fake", b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
             **{key.encode(): value for key, value in labels.items()}}
    return pickle.dumps(batch, protocol=3)


def write_cifar10(folder: Path, per_batch: int = 6, seed: int = 0) -> Path:
    """cifar-10-batches-py/ with five training batches and a test batch; returns that folder."""
    rng = np.random.default_rng(seed)
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for name in CIFAR10_FILES:
        (batches / name).write_bytes(cifar_batch(rng, per_batch, labels=rng.integers(0, 10, per_batch).tolist()))
    return batches


def ragged(rng: np.random.Generator, count: int, words: int, longest: int = 40) -> np.ndarray:
    """An object array of Python int lists, as in Keras's imdb.npz and reuters.npz."""
    sequences = np.empty(count, dtype=object)
    for i in range(count):
        sequences[i] = rng.integers(1, words, rng.integers(1, longest)).tolist()
    return sequences


def write_imdb(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "imdb.npz", x_train=ragged(rng, 30, 100), y_train=rng.integers(0, 2, 30),
             x_test=ragged(rng, 20, 100), y_test=rng.integers(0, 2, 20))
    return folder / "imdb.npz"


def write_reuters(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "reuters.npz", x=ragged(rng, 60, 300), y=rng.integers(0, 46, 60))
    return folder / "reuters.npz"


def write_housing(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "california_housing.npz", x=rng.normal(size=(100, 8)), y=rng.uniform(1e4, 5e5, 100))
    return folder / "california_housing.npz"


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$DLTRAIN_DATA, and nothing else searched (a real ~/.keras/datasets must not leak into a test)."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("DLTRAIN_DATA", str(root))
    monkeypatch.setattr(builtins, "search_dirs",
                        lambda name, data_dir=None: ([Path(data_dir)] if data_dir else []) + [root / name, root])
    return root


def keras_module(name: str, monkeypatch: pytest.MonkeyPatch, file: Path):
    """keras.datasets.<name>'s module with its downloader pointed at `file` (no hash check, no network)."""
    import importlib

    module = importlib.import_module(f"keras.src.datasets.{name}")
    monkeypatch.setattr(module, "get_file", lambda *args, **kwargs: str(file))
    return module


# --- facts, without reading ----------------------------------------------------------------------------

def test_shipped_configs_resolve_dataset_facts_without_tensorflow():
    code = ("import sys; from dltrain.load import load_config; "
            f"print([load_config(path).config.model.layers[-1] for path in "
            f"{[str(CONFIGS / 'cifar10.yaml'), str(CONFIGS / 'imdb.yaml')]!r}]); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.count("'units': 10") == 1 and out.count("'units': 2") == 1


def test_test_split_applies_to_the_builtins_whose_keras_loader_takes_it(write_config):
    for name in ("reuters", "california_housing"):
        assert load_config(write_config(SYNTHETIC.replace("name: synthetic\n  input_shape: [8]\n  num_classes: 3",
                                                          f"name: {name}\n  test_split: 0.3"))).config.dataset.test_split == 0.3
    path = write_config(SYNTHETIC.replace("name: synthetic\n  input_shape: [8]\n  num_classes: 3",
                                          "name: cifar10\n  test_split: 0.3"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (f"{path}:5:3: dataset.test_split: 'test_split' does not apply to the cifar10 dataset "
                               "(remove it; it applies to: audio, california_housing, csv, hf, images, jsonl, npy, "
                               "npz, parquet, reuters, text, tfds, tfrecord, timeseries)")

# --- cifar ---------------------------------------------------------------------------------------------

def test_cifar10_equals_keras_batches_channels_last(data_root: Path):
    from keras.src.datasets.cifar import load_batch

    batches = write_cifar10(data_root / "cifar10")
    splits = data.load(DatasetConfig(name="cifar10", validation_split=0.0), 0)
    # Keras's cifar10.load_data wants the real 10,000 rows per batch; its per-file reader takes any size.
    parts = [load_batch(str(batches / name)) for name in CIFAR10_FILES]
    x_train = np.concatenate([x for x, _ in parts[:5]]).transpose(0, 2, 3, 1)
    y_train = np.concatenate([y for _, y in parts[:5]])
    assert splits.train.x.dtype == np.uint8 and splits.train.x.shape == (30, 32, 32, 3)
    assert np.array_equal(splits.train.x, x_train) and np.array_equal(splits.train.y, y_train)
    assert splits.train.y.shape == (30,)  # Keras's (n, 1) labels become one class index per image
    assert np.array_equal(splits.test.x, parts[5][0].transpose(0, 2, 3, 1))
    assert splits.info.class_names[:3] == ["airplane", "automobile", "bird"] and splits.info.num_classes == 10


def test_cifar10_archive_and_keras_cache_folder_read_the_same(data_root: Path, tmp_path: Path):
    batches = write_cifar10(tmp_path / "made")
    expected = keras_cache.read_cifar10(tmp_path / "made")
    with tarfile.open(data_root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(batches, arcname="cifar-10-batches-py")
    from_archive = data.load(DatasetConfig(name="cifar10", validation_split=0.0), 0)
    assert np.array_equal(from_archive.train.x, expected[0][0]) and np.array_equal(from_archive.test.y, expected[1][1].ravel())
    extracted = tmp_path / "keras" / "cifar-10-batches-py-target"  # where Keras 3 extracts its download
    extracted.mkdir(parents=True)
    batches.rename(extracted / "cifar-10-batches-py")
    from_cache = keras_cache.read_cifar10(tmp_path / "keras")
    assert np.array_equal(from_cache[0][0], expected[0][0])


@pytest.mark.parametrize("label_mode, classes, first", [("fine", 100, "apple"), ("coarse", 20, "aquatic_mammals")])
def test_cifar100_label_modes_equal_keras(data_root: Path, monkeypatch: pytest.MonkeyPatch,
                                          label_mode: str, classes: int, first: str):
    rng = np.random.default_rng(1)
    folder = data_root / "cifar100" / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, count in (("train", 12), ("test", 5)):
        fine = rng.integers(0, 100, count)
        (folder / name).write_bytes(cifar_batch(rng, count, fine_labels=fine.tolist(), coarse_labels=(fine // 5).tolist()))
    config = DatasetConfig(name="cifar100", label_mode=label_mode, validation_split=0.0)
    splits = data.load(config, 0)
    (x_train, y_train), (x_test, y_test) = keras_module("cifar100", monkeypatch, data_root / "cifar100").load_data(label_mode)
    assert np.array_equal(splits.train.x, x_train) and np.array_equal(splits.train.y, y_train.ravel())
    assert np.array_equal(splits.test.x, x_test) and np.array_equal(splits.test.y, y_test.ravel())
    info = data.describe(config)
    assert (info.num_classes, len(info.class_names), info.class_names[0]) == (classes, classes, first)


def test_incomplete_or_corrupt_cifar_is_a_clear_error(data_root: Path):
    batches = write_cifar10(data_root / "cifar10")
    (batches / "data_batch_3").unlink()
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(name="cifar10"), 0)
    assert str(info.value) == f"dataset.name: {batches} lacks data_batch_3 (extract the whole archive again)"
    (batches / "data_batch_3").write_bytes((batches / "data_batch_2").read_bytes()[:500])
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(name="cifar10"), 0)
    assert str(info.value).startswith(f"dataset.name: cannot read {batches / 'data_batch_3'}: ")
    assert str(info.value).endswith("(the file is corrupt, truncated or not the dataset's file; place a fresh copy)")


class _Payload:
    def __reduce__(self):
        return os.system, ("echo pwned",)


def test_a_pickle_that_would_run_code_is_refused(data_root: Path):
    folder = data_root / "imdb"
    folder.mkdir()
    evil = np.empty(1, dtype=object)
    evil[0] = _Payload()
    np.savez(folder / "imdb.npz", x_train=evil, y_train=np.zeros(1), x_test=evil, y_test=np.zeros(1))
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(name="imdb"), 0)
    assert str(info.value) == (
        f"dataset.name: cannot read {folder / 'imdb.npz'} (x_train.npy): it asks for posix.system, which a dataset "
        "file never needs (the file is corrupt, truncated or not the dataset's file; place a fresh copy)")


# --- imdb and reuters ----------------------------------------------------------------------------------

@pytest.mark.parametrize("num_words, maxlen", [(None, None), (50, None), (None, 20), (30, 25)])
def test_imdb_equals_keras_then_padded(data_root: Path, monkeypatch: pytest.MonkeyPatch,
                                       num_words: int | None, maxlen: int | None):
    import keras

    path = write_imdb(data_root / "imdb")
    config = DatasetConfig(name="imdb", num_words=num_words, maxlen=maxlen, validation_split=0.0)
    splits = data.load(config, 0)
    (x_train, y_train), (x_test, y_test) = keras_module("imdb", monkeypatch, path).load_data(
        num_words=num_words, maxlen=maxlen)
    (mine, _), (mine_test, _) = keras_cache.imdb(path, num_words, maxlen)
    assert mine.tolist() == [list(x) for x in x_train] and mine_test.tolist() == [list(x) for x in x_test]
    length = maxlen or builtins.DEFAULT_MAXLEN
    assert np.array_equal(splits.train.x, keras.utils.pad_sequences(x_train, maxlen=length))
    assert np.array_equal(splits.test.x, keras.utils.pad_sequences(x_test, maxlen=length))
    assert np.array_equal(splits.train.y, y_train) and np.array_equal(splits.test.y, y_test)
    assert splits.info.input_shape == data.describe(config).input_shape == (length,)
    if num_words:
        assert splits.train.x.max() < num_words
    if maxlen:  # Keras leaves out sequences of maxlen tokens or more: fewer examples, and a note says so
        assert len(splits.train) < 30
        assert splits.info.notes == [f"imdb: maxlen {maxlen} keeps the {len(x_train)} training and {len(x_test)} "
                                     f"test sequences shorter than {maxlen} tokens (Keras's loader leaves longer "
                                     "ones out)"]


def test_imdb_without_maxlen_cuts_to_the_default_length_and_says_so(data_root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(builtins, "DEFAULT_MAXLEN", 12)
    write_imdb(data_root / "imdb")
    splits = data.load(DatasetConfig(name="imdb", validation_split=0.0), 0)
    assert splits.train.x.shape == (30, 12) and data.describe(DatasetConfig(name="imdb")).input_shape == (12,)
    (note,) = splits.info.notes
    assert re.fullmatch(r"imdb: \d+ of 50 sequences are longer than 12 tokens and keep their last 12; "
                        r"set dataset.maxlen to choose the length", note)


@pytest.mark.parametrize("test_split", [None, 0.3])
def test_reuters_equals_keras_with_its_test_split(data_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                  test_split: float | None):
    import keras

    path = write_reuters(data_root / "reuters")
    config = DatasetConfig(name="reuters", num_words=40, maxlen=30, test_split=test_split, validation_split=0.0)
    splits = data.load(config, 0)
    (x_train, y_train), (x_test, y_test) = keras_module("reuters", monkeypatch, path).load_data(
        num_words=40, maxlen=30, **({"test_split": test_split} if test_split else {}))
    assert np.array_equal(splits.train.x, keras.utils.pad_sequences(x_train, maxlen=30))
    assert np.array_equal(splits.test.x, keras.utils.pad_sequences(x_test, maxlen=30))
    assert np.array_equal(splits.train.y, y_train) and np.array_equal(splits.test.y, y_test)
    assert splits.info.num_classes == 46 and splits.info.class_names[:2] == ["cocoa", "grain"]


def test_maxlen_that_keeps_nothing_is_a_clear_error(data_root: Path):
    write_imdb(data_root / "imdb")
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(name="imdb", maxlen=2), 0)
    assert str(info.value) == ("dataset.maxlen: no sequence is shorter than maxlen=2 (raise maxlen: Keras's loader "
                               "leaves out sequences of maxlen tokens or more)")


def test_pad_sequences_equals_keras():
    import keras

    sequences = [[5, 6, 7], [], list(range(1, 30)), [9] * 10, [4]]
    for maxlen in (1, 10, 40):
        assert np.array_equal(keras_cache.pad_sequences(sequences, maxlen), keras.utils.pad_sequences(sequences, maxlen))
    assert keras_cache.pad_sequences([], 5).shape == (0, 5)


# --- california_housing --------------------------------------------------------------------------------

@pytest.mark.parametrize("test_split, test_rows", [(None, 20), (0.35, 35)])
def test_california_housing_is_regression_split_as_keras(data_root: Path, monkeypatch: pytest.MonkeyPatch,
                                                         test_split: float | None, test_rows: int):
    path = write_housing(data_root / "california_housing")
    config = DatasetConfig(name="california_housing", test_split=test_split, validation_split=0.1)
    splits = data.load(config, 0)
    (x_train, y_train), (x_test, y_test) = keras_module("california_housing", monkeypatch, path).load_data(
        test_split=test_split or 0.2)
    assert np.array_equal(splits.test.x, x_test) and np.array_equal(splits.test.y, y_test) and len(x_test) == test_rows
    assert len(splits.train) + len(splits.val) == len(x_train)
    assert splits.info.task == "regression" and splits.info.num_classes is None and splits.info.input_shape == (8,)


# --- the download fallback and its errors --------------------------------------------------------------

def test_download_fallback_passes_the_configs_arguments(data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = write_imdb(tmp_path / "elsewhere")  # not in a searched folder: only "Keras's download" has it
    monkeypatch.delenv("DLTRAIN_OFFLINE")
    keras_module("imdb", monkeypatch, path)
    config = DatasetConfig(name="imdb", num_words=30, maxlen=25, validation_split=0.0)
    downloaded = data.load(config, 0)
    write_imdb(data_root / "imdb")
    local = data.load(config, 0)
    assert np.array_equal(downloaded.train.x, local.train.x) and np.array_equal(downloaded.test.y, local.test.y)
    assert downloaded.info.notes == local.info.notes


@pytest.mark.parametrize("name, files", [
    ("cifar10", "cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/ folder)"),
    ("cifar100", "cifar-100-python.tar.gz (or its extracted cifar-100-python/ folder)"),
    ("imdb", "Keras's imdb.npz"),
    ("reuters", "Keras's reuters.npz"),
    ("california_housing", "Keras's california_housing.npz"),
])
def test_missing_offline_names_the_files_to_place(data_root: Path, name: str, files: str):
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(name=name), 0)
    assert str(info.value) == (
        f"dataset.name: dataset '{name}' not found locally and downloads are off (DLTRAIN_OFFLINE=1) "
        f"(place {files} in $DLTRAIN_DATA/{name}/ or /usr/share/datasets/{name.replace('_', '-')}/)")


def test_failed_download_names_the_reason(data_root: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DLTRAIN_OFFLINE")
    from keras.src.datasets import cifar10

    def no_network(*args, **kwargs):
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar10, "get_file", no_network)
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(name="cifar10"), 0)
    assert str(info.value) == (
        "dataset.name: dataset 'cifar10' not found locally and the download failed: URL fetch failure on "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None -- [Errno -3] Temporary failure in name "
        "resolution (place cifar-10-python.tar.gz (or its extracted cifar-10-batches-py/ folder) in "
        "$DLTRAIN_DATA/cifar10/ or /usr/share/datasets/cifar10/)")


def test_data_dir_is_searched_first(data_root: Path, tmp_path: Path):
    write_housing(data_root / "california_housing", seed=0)
    write_housing(tmp_path / "mine", seed=1)
    mine = data.load(DatasetConfig(name="california_housing", data_dir=str(tmp_path / "mine")), 0)
    default = data.load(DatasetConfig(name="california_housing"), 0)
    assert not np.array_equal(mine.test.y, default.test.y)
    assert np.array_equal(np.sort(mine.test.y), np.sort(keras_cache.california_housing(
        tmp_path / "mine" / "california_housing.npz", 0.2)[1][1]))


# --- end to end ----------------------------------------------------------------------------------------

def test_train_one_epoch_on_cifar10(data_root: Path, tmp_path: Path):
    from dltrain.cli import app

    write_cifar10(data_root / "cifar10", per_batch=8)
    config = tmp_path / "cifar10.yaml"
    config.write_text("""\
name: cifar-tiny
seed: 3
dataset:
  name: cifar10
  validation_split: 0.25
  augmentation:
    - RandomFlip: {mode: horizontal}
model:
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
    - GlobalAveragePooling2D
    - Dense: {units: "${dataset.num_classes}", activation: softmax}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training:
  epochs: 1
  batch_size: 16
""")
    result = CliRunner().invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "outputs"), "--no-progress"])
    assert result.exit_code == 0, result.output
    run = Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))
    facts = json.loads((run / "dataset.json").read_text())
    assert facts["sizes"] == {"train": 30, "validation": 10, "test": 8}
    assert facts["input_shape"] == [32, 32, 3] and facts["class_names"][-1] == "truck"



@pytest.mark.parametrize("config, write, facts", [
    ("imdb.yaml", write_imdb, {"input_shape": [200], "num_classes": 2, "task": "classification"}),
    ("california_housing.yaml", write_housing, {"input_shape": [8], "num_classes": None, "task": "regression"}),
])
def test_shipped_builtin_configs_train_one_epoch_on_files_in_keras_formats(data_root: Path, tmp_path: Path,
                                                                           config: str, write, facts: dict):
    from dltrain.cli import app

    write(data_root / config.removesuffix(".yaml"))
    result = CliRunner().invoke(app, ["train", str(CONFIGS / config), "--output-dir", str(tmp_path / "outputs"),
                                      "--no-progress", "--set", "training.epochs=1",
                                      "--set", "training.tensorboard=false"])
    assert result.exit_code == 0, result.output
    run = Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))
    described = json.loads((run / "dataset.json").read_text())
    assert {key: described[key] for key in facts} == facts
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["test"]["loss"])
