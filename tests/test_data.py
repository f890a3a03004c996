"""Dataset loading on small files the tests write themselves; never the network."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dltrain import data
from dltrain.cli import app
from dltrain.data import builtins
from dltrain.config import DatasetConfig
from dltrain.errors import ConfigError, DataError
from dltrain.load import load_config


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


# Data that works the first time, from configs written as the README shows them.
PETS = """\
name: pets
seed: 3
dataset:
  path: imgs/train
  image_size: [16, 16]
  test: {path: imgs/test, format: images, image_size: [16, 16]}
model:
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Conv2D: {filters: 4, kernel_size: 3, activation: relu}
    - Flatten
    - Dense: {units: "${dataset.num_classes}", activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
training: {epochs: 1, batch_size: 8, tensorboard: false}
"""
FLOWERS = """\
name: flowers
seed: 1
dataset:
  path: flowers.csv
  label: species
  validation_split: 0.1
model:
  layers:
    - Dense: {units: 8, activation: relu}
    - Dense: {units: "${dataset.num_classes}", activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
training: {epochs: 1, batch_size: 16, tensorboard: false}
"""
DEFAULT_TEST_NOTE = ("note: 'flowers.csv' has no test split of its own: test_split 0.2 of it is carved from the seed "
                     "(set dataset.test_split, or a dataset.test source, to choose)")


def train(config: str, *options: str):
    result = CliRunner().invoke(app, ["train", config, "--no-progress", *options])
    assert result.exit_code == 0, result.output
    return result, Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


@pytest.fixture
def pets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """imgs/train and imgs/test, a folder per class of 20x24 PNGs (resized to image_size), in the working folder."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    for split, count in (("train", 12), ("test", 4)):
        for name, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
            folder = tmp_path / "imgs" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((20, 24, 3), colour, np.uint8)).save(folder / f"{i}.png")
    (tmp_path / "pets.yaml").write_text(PETS)
    return tmp_path


def test_an_image_folder_with_its_own_test_folder_trains(pets: Path):
    result, run = train("pets.yaml")
    assert result.stderr == ""
    dataset = json.loads((run / "dataset.json").read_text())
    assert dataset["input_shape"] == [16, 16, 3] and dataset["sizes"] == {"train": 22, "validation": 2, "test": 8}
    written = yaml.safe_load((run / "config.yaml").read_text())["dataset"]
    assert written["test"] == {"path": str(pets / "imgs" / "test"), "format": "images", "image_size": [16, 16]}
    assert "test_split" not in written  # the test folder is the test split


@pytest.mark.parametrize("test, expected", [
    ("{path: imgs/test, format: images, image_size: [32, 32]}",
     "pets.yaml:6:43: dataset.test.image_size: [32, 32] would give the test images another shape than the training "
     "images; dataset.image_size is [16, 16] at pets.yaml:5:3 (remove it: unset, the test source takes the training "
     "data's; or give dataset.image_size the same value)"),
    ("{path: imgs/test, color_mode: grayscale}",
     "pets.yaml:6:27: dataset.test.color_mode: 'grayscale' would give the test images another number of channels "
     "than the training images; dataset.color_mode is 'rgb', the default (remove it: unset, the test source takes "
     "the training data's; or give dataset.color_mode the same value)"),
    ("{path: imgs/test, max_tokens: 100}",
     "pets.yaml:6:27: dataset.test.max_tokens: 'max_tokens' does not apply to 'images' sources (remove it; it "
     "applies to: csv, hf, parquet, text)"),
    ("{path: imgs/test, image_sise: [16, 16]}",
     "pets.yaml:6:27: dataset.test.image_sise: unknown key 'image_sise' (did you mean 'image_size'?)"),
], ids=["another-shape", "another-channel-count", "not-of-its-format", "typo"])
def test_a_split_source_key_that_cannot_hold_is_an_error(pets: Path, test: str, expected: str):
    (pets / "pets.yaml").write_text(PETS.replace("{path: imgs/test, format: images, image_size: [16, 16]}", test))
    with pytest.raises(ConfigError) as error:
        load_config("pets.yaml")
    assert str(error.value) == expected


def test_a_split_source_reads_its_files_with_its_own_keys(pets: Path):
    """Keys that leave the shape alone (interpolation, crop_to_aspect_ratio) may differ from the main source's."""
    from PIL import Image

    for name, colour in (("cat", (200, 30, 30)), ("dog", (30, 30, 200))):
        pixels = np.zeros((16, 32, 3), np.uint8)
        pixels[:, 8:24] = colour  # the class colour in the middle, black at the sides
        Image.fromarray(pixels).save(pets / "imgs" / "test" / name / "0.png")
    loaded = load_config("pets.yaml", ["dataset.test={path: imgs/test, crop_to_aspect_ratio: true, "
                                       "interpolation: nearest}"])
    splits = data.load(loaded.config.dataset, loaded.config.seed)
    first = data.examples(splits.test, [0]).x[0]  # imgs/test/cat/0.png: cropped to its middle square
    assert first.shape == (16, 16, 3) and (first == (200, 30, 30)).all()
    plain = data.load(load_config("pets.yaml").config.dataset, 3)
    assert (data.examples(plain.test, [0]).x[0] == 0).any()  # resized whole: the black sides stay


@pytest.fixture
def flowers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """flowers.csv (60 rows: two measurements, a colour and the species) and flowers.yaml, in the working folder."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    rows = ["sepal_length,sepal_width,colour,species"]
    for i in range(60):
        k = i % 3
        rows.append(f"{4 + k + rng.normal(0, 0.3):.2f},{3 - k * 0.5 + rng.normal(0, 0.2):.2f},"
                    f"{['red', 'blue', 'white'][k]},{['setosa', 'versicolor', 'virginica'][k]}")
    (tmp_path / "flowers.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "flowers.yaml").write_text(FLOWERS)
    return tmp_path


def test_a_csv_without_a_test_split_gets_one(flowers: Path):
    result, run = train("flowers.yaml")
    assert result.stderr == DEFAULT_TEST_NOTE + "\n"
    assert yaml.safe_load((run / "config.yaml").read_text())["dataset"]["test_split"] == 0.2
    assert json.loads((run / "dataset.json").read_text())["sizes"] == {"train": 43, "validation": 5, "test": 12}
    # The default is the split `test_split: 0.2` carves, from the same seed.
    default = data.load(load_config("flowers.yaml").config.dataset, 1)
    written = data.load(load_config("flowers.yaml", ["dataset.test_split=0.2"]).config.dataset, 1)
    assert np.array_equal(default.test.y, written.test.y) and default.info.notes and not written.info.notes
    for name in ("sepal_length", "colour"):
        assert np.array_equal(default.test.x[name], written.test.x[name])
    # The run's config, and the user's config without test_split, mean the same split.
    refused = CliRunner().invoke(app, ["train", "flowers.yaml", "--resume", str(run), "--set", "training.epochs=2"])
    assert refused.exit_code == 1
    assert refused.stderr == (f"error: the config changed since '{run}' started: training.epochs (1 -> 2) (pass "
                              "--force to resume with the changed config, or start a new run)\n")
