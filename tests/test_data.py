"""Dataset loading on small files the tests write themselves; never the network."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from dltrain import data
from dltrain.data import builtins
from dltrain.config import DatasetConfig
from dltrain.errors import DataError


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A 100/40-example Fashion-MNIST lookalike in $DLTRAIN_DATA/fashion_mnist."""
    folder = tmp_path / "data" / "fashion_mnist"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 100), ("t10k", 40)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    monkeypatch.setenv("DLTRAIN_DATA", str(tmp_path / "data"))
    return folder


def test_read_idx_round_trips(tmp_path: Path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(data.read_idx(tmp_path / "x.gz"), array)


def test_truncated_idx_is_a_clear_error(tmp_path: Path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"abc")
    with pytest.raises(DataError, match="holds 3 bytes of data, its header says 10"):
        data.read_idx(path)


def test_local_folder_is_used_and_split_is_seeded(fake_fashion: Path):
    config = DatasetConfig(name="fashion_mnist", validation_split=0.2)
    first = data.load(config, seed=1)
    assert (len(first.train), len(first.val), len(first.test)) == (80, 20, 40)
    assert first.train.x.dtype == np.uint8 and first.train.x.shape[1:] == (28, 28)
    assert first.info.class_names[0] == "T-shirt/top"
    again = data.load(config, seed=1)
    assert np.array_equal(first.val.y, again.val.y) and np.array_equal(first.val.x, again.val.x)
    other = data.load(config, seed=2)
    assert not np.array_equal(first.val.x, other.val.x)


def test_train_and_test_size_take_subsets(fake_fashion: Path):
    splits = data.load(DatasetConfig(name="fashion_mnist", train_size=50, test_size=10, validation_split=0.1), 0)
    assert splits.info.sizes == {"train": 45, "validation": 5, "test": 10}


def test_missing_dataset_offline_names_files_and_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DLTRAIN_DATA", str(tmp_path))
    monkeypatch.setattr(builtins, "search_dirs", lambda name, data_dir=None: [tmp_path / name])
    with pytest.raises(DataError) as info:
        data.load(DatasetConfig(name="mnist"), 0)
    assert str(info.value) == (
        "dataset.name: dataset 'mnist' not found locally and downloads are off (DLTRAIN_OFFLINE=1) "
        "(place train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz (or Keras's mnist.npz) in $DLTRAIN_DATA/mnist/ or /usr/share/datasets/mnist/)"
    )


def test_failed_download_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DLTRAIN_OFFLINE")
    monkeypatch.setattr(builtins, "search_dirs", lambda name, data_dir=None: [tmp_path / name])

    def no_network(config: DatasetConfig):
        raise Exception("URL fetch failure on https://example.invalid/mnist.npz: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(builtins, "_download", no_network)
    with pytest.raises(DataError, match=r"^dataset.name: dataset 'fashion_mnist' not found locally and the download "
                                        r"failed: URL fetch failure .* \(on Debian: apt-get install -y "
                                        r"dataset-fashion-mnist\)\)$"):
        data.load(DatasetConfig(name="fashion_mnist"), 0)


def test_synthetic_is_seeded_and_learnable_shape():
    config = DatasetConfig(name="synthetic", input_shape=[4, 2], num_classes=3, train_size=30, test_size=9,
                           validation_split=0.0)
    a, b = data.load(config, 5), data.load(config, 5)
    assert np.array_equal(a.train.x, b.train.x)
    assert a.train.x.shape == (30, 4, 2) and a.val is None and len(a.test) == 9
    assert set(np.unique(a.train.y)) <= {0, 1, 2}


def test_labels_out_of_range_are_refused(fake_fashion: Path):
    write_idx(fake_fashion / "t10k-labels-idx1-ubyte.gz", np.full(40, 12))
    with pytest.raises(DataError, match="test labels range over 12..12, outside 0..9"):
        data.load(DatasetConfig(name="fashion_mnist"), 0)


def test_to_dataset_batches_everything(fake_fashion: Path):
    splits = data.load(DatasetConfig(name="fashion_mnist", validation_split=0.0), 0)
    batches = list(data.to_dataset(splits.train, 32, shuffle=True, seed=0))
    assert [len(y) for _, y in batches] == [32, 32, 32, 4]
    seen = np.sort(np.concatenate([y.numpy() for _, y in batches]))
    assert np.array_equal(seen, np.sort(splits.train.y))


def test_keras_mnist_npz_is_read_for_mnist_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_train=np.arange(20) % 10, x_test=np.zeros((5, 28, 28), np.uint8), y_test=np.arange(5))
    monkeypatch.setattr(builtins, "search_dirs", lambda name, data_dir=None: [tmp_path])
    assert data.load(DatasetConfig(name="mnist", validation_split=0.0), 0).info.sizes["train"] == 20
    with pytest.raises(DataError, match="dataset 'fashion_mnist' not found locally"):
        data.load(DatasetConfig(name="fashion_mnist"), 0)
