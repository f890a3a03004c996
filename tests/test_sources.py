"""npz/npy sources, named features for multi-input models, streamed files, and augmentation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dltrain import data
from dltrain.cli import app
from dltrain.config import DatasetConfig
from dltrain.errors import DataError

runner = CliRunner()

NPZ = """\
name: arrays
seed: 3
dataset:
  path: {path}
  validation_split: 0.2
model:
  layers:
    - Flatten
    - Dense: {{units: 16, activation: relu}}
    - Dense: {{units: "${{dataset.num_classes}}", activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training:
  epochs: 1
  batch_size: 16
  tensorboard: false
"""

TWO_INPUTS = """\
name: two-inputs
seed: 3
dataset:
  path: {path}
  features: [image, meta]
  label: target
  test_split: 0.25
model:
  inputs: {{image: [6, 6], meta: [3]}}
  layers:
    - Flatten: {{name: flat, inputs: image}}
    - Concatenate: {{name: both, inputs: [flat, meta]}}
    - Dense: {{units: 2, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training:
  epochs: 1
  batch_size: 8
  tensorboard: false
"""


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def run_folder(output: str) -> Path:
    return Path(re.search(r"^run folder: (.+)$", output.strip(), re.M).group(1))


def learnable(count: int, shape: tuple[int, ...], classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, count)
    x = rng.normal(0, 0.3, (count, *shape)) + y.reshape(-1, *([1] * len(shape)))
    return x.astype("float32"), y


def test_npz_with_keras_names_trains_and_evaluates(tmp_path: Path):
    x, y = learnable(100, (4, 3), 3)
    np.savez(tmp_path / "d.npz", x_train=x[:80], y_train=y[:80], x_test=x[80:], y_test=y[80:])
    config = tmp_path / "c.yaml"
    config.write_text(NPZ.format(path=tmp_path / "d.npz"))
    result = invoke("train", config, "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    run = run_folder(result.stdout)
    facts = json.loads((run / "dataset.json").read_text())
    assert facts["sizes"] == {"train": 64, "validation": 16, "test": 20}
    assert facts["input_shape"] == [4, 3] and facts["num_classes"] == 3 and facts["task"] == "classification"
    tested = json.loads((run / "metrics.json").read_text())["test"]
    scored = json.loads(invoke("evaluate", run, "--json").stdout)
    assert scored["accuracy"] == pytest.approx(tested["accuracy"])


def test_npy_folder_with_two_named_features_feeds_a_two_input_model(tmp_path: Path):
    folder = tmp_path / "arrays"
    folder.mkdir()
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, 64)
    np.save(folder / "image.npy", rng.normal(size=(64, 6, 6)).astype("float32") + target[:, None, None])
    np.save(folder / "meta.npy", rng.normal(size=(64, 3)).astype("float32"))
    np.save(folder / "target.npy", target)
    config = tmp_path / "c.yaml"
    config.write_text(TWO_INPUTS.format(path=folder))
    result = invoke("train", config, "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    run = run_folder(result.stdout)
    facts = json.loads((run / "dataset.json").read_text())
    assert facts["features"] == ["image", "meta"]
    assert facts["sizes"] == {"train": 43, "validation": 5, "test": 16}

    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(TWO_INPUTS.format(path=folder).replace("inputs: {image: [6, 6], meta: [3]}",
                                                              "inputs: {image: [6, 6], extra: [3]}")
                       .replace("[flat, meta]", "[flat, extra]"))
    refused = invoke("train", renamed, "--output-dir", tmp_path / "out", "--no-progress")
    assert refused.exit_code == 1
    assert refused.stderr == (f"error: {renamed}:9:3: model.inputs: dataset 'arrays' gives the features image, meta but "
                              "the model's inputs are image, extra (name one entry of model.inputs after each "
                              "feature array)\n")


def test_bad_arrays_are_clear_errors(tmp_path: Path):
    np.savez(tmp_path / "short.npz", x=np.zeros((10, 2)), y=np.zeros(9, "int64"))
    with pytest.raises(DataError) as error:
        data.load(DatasetConfig(path=str(tmp_path / "short.npz"), test_split=0.2), 0)
    assert str(error.value) == ("dataset: the train split has 10 examples but 9 labels "
                                "(features and labels must have the same length)")

    np.savez(tmp_path / "names.npz", inputs=np.zeros((10, 2)), y=np.zeros(10, "int64"))
    with pytest.raises(DataError) as error:
        data.load(DatasetConfig(path=str(tmp_path / "names.npz"), features="input", test_split=0.2), 0)
    assert str(error.value) == (f"dataset.features: {tmp_path / 'names.npz'} has no array 'input' (nor "
                                "'input_train') (did you mean 'inputs'?)")

    np.savez(tmp_path / "objects.npz", x=np.array([[1], [1, 2]], dtype=object), y=np.zeros(2, "int64"))
    with pytest.raises(DataError, match=r"cannot read array 'x' .*\(store numbers or fixed-width strings, not "
                                        r"Python objects\)$"):
        data.load(DatasetConfig(path=str(tmp_path / "objects.npz"), test_split=0.5), 0)

    np.savez(tmp_path / "d.npz", x=np.zeros((2, 2)), y=np.arange(2))
    with pytest.raises(DataError) as error:
        data.load(DatasetConfig(path=str(tmp_path / "d.npz")), 0)  # 0.2 of 2 examples is none
    assert str(error.value) == ("dataset: 'd' has 2 examples, too few to carve a test split from (add examples, or "
                                "a 'test:' source with its own path)")
    with pytest.raises(DataError) as error:
        data.load(DatasetConfig(path=str(tmp_path / "missing.npz")), 0)
    assert str(error.value) == (f"dataset.path: dataset path '{tmp_path / 'missing.npz'}' not found (check the "
                                "path; a relative path is read from the working folder)")


def test_string_and_float_labels_pick_the_task(tmp_path: Path):
    np.savez(tmp_path / "names.npz", x=np.zeros((6, 2)), y=np.array(["cat", "dog", "cat", "emu", "dog", "cat"]))
    splits = data.load(DatasetConfig(path=str(tmp_path / "names.npz"), test_split=0.5, validation_split=0.0), 0)
    assert splits.info.class_names == ["cat", "dog", "emu"] and splits.info.num_classes == 3
    assert sorted(np.concatenate([splits.train.y, splits.test.y]).tolist()) == [0, 0, 0, 1, 1, 2]
    np.savez(tmp_path / "values.npz", x=np.zeros((6, 2)), y=np.linspace(0, 1, 6))
    splits = data.load(DatasetConfig(path=str(tmp_path / "values.npz"), test_split=0.5), 0)
    assert splits.info.num_classes is None and splits.info.task == "regression"
    assert splits.train.y.dtype == np.float32


def raw_files(folder: Path, count: int) -> data.FileSplit:
    """Examples stored one per file as raw bytes: example i is a 2x2 image filled with i."""
    import tensorflow as tf

    folder.mkdir()
    paths = []
    for i in range(count):
        path = folder / f"{i:03d}.raw"
        path.write_bytes(bytes([i] * 4))
        paths.append(str(path))

    def read(path):
        return tf.reshape(tf.io.decode_raw(tf.io.read_file(path), tf.uint8), [2, 2, 1])

    return data.FileSplit(np.array(paths), np.arange(count) % 3, read, (2, 2, 1))


def epoch_orders(dataset, randomness, epochs: list[int]) -> list[list[int]]:
    orders = []
    for epoch in epochs:
        randomness.on_epoch_begin(epoch)
        orders.append([int(v) for x, _ in dataset for v in x.numpy()[:, 0, 0, 0]])
    return orders


@pytest.mark.parametrize("cache", [None, "file"])
def test_streamed_files_are_read_in_a_seeded_order_per_epoch(tmp_path: Path, cache: str | None):
    from dltrain.data.epochs import EpochRandomness

    split = raw_files(tmp_path / "files", 37)
    cache_path = str(tmp_path / "cache" / "train") if cache else None
    if cache_path:
        Path(cache_path).parent.mkdir()
    randomness = EpochRandomness(11)
    ds = randomness.files(split, 8, cache=cache_path, buffer=16)
    first, second, first_again = epoch_orders(ds, randomness, [0, 1, 0])
    assert sorted(first) == sorted(second) == list(range(37))  # every file once per epoch
    assert first != second and first == first_again
    # A new process (a resumed run) draws the same order for the same epoch.
    again = EpochRandomness(11)
    assert epoch_orders(again.files(split, 8, cache=cache_path, buffer=16), again, [1]) == [second]
    assert [len(x) for x, _ in ds] == [8, 8, 8, 8, 5]
    if cache_path:
        assert any(Path(cache_path).parent.iterdir())  # decoded once into the cache file


def test_in_memory_decodes_streamed_files_and_names_unreadable_ones(tmp_path: Path):
    split = raw_files(tmp_path / "files", 5)
    memory = data.in_memory(split)
    assert memory.x.dtype == np.uint8 and memory.x[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4]
    Path(split.paths[2]).write_bytes(b"\x01")  # 1 byte where 4 are expected
    with pytest.raises(DataError) as info:
        data.in_memory(split)
    assert str(info.value) == (f"cannot read {split.paths[2]}: Input to reshape is a tensor with 1 values, but the "
                               "requested shape has 4 (remove or replace the damaged file)")


AUGMENTED = """\
name: augmented
seed: 5
dataset:
  name: synthetic
  input_shape: [8, 8, 1]
  num_classes: 2
  train_size: 96
  test_size: 32
  augmentation:
    - RandomFlip: {mode: horizontal}
    - RandomTranslation: {height_factor: 0.1, width_factor: 0.1}
model:
  layers:
    - Flatten
    - Dense: {units: 2, activation: softmax}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training:
  epochs: 2
  batch_size: 16
  tensorboard: false
"""


def test_augmentation_trains_and_resumes_bit_identically(tmp_path: Path):
    import keras

    config = tmp_path / "c.yaml"
    config.write_text(AUGMENTED)
    full = invoke("train", config, "--output-dir", tmp_path / "full", "--no-progress")
    assert full.exit_code == 0, full.output
    half = invoke("train", config, "--set", "training.epochs=1", "--output-dir", tmp_path / "half", "--no-progress")
    resumed = invoke("train", config, "--resume", run_folder(half.stdout), "--force", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    a, b = (keras.saving.load_model(run_folder(r.stdout) / "model.keras").get_weights() for r in (full, half))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # The saved model is for prediction: it holds no augmentation layer.
    names = [type(layer).__name__ for layer in keras.saving.load_model(run_folder(full.stdout) / "model.keras").layers]
    assert "RandomFlip" not in names


def test_augmentation_flips_each_image_without_a_channel_axis_left_to_right(tmp_path: Path):
    """MNIST-style [28, 28] images: each image of a batch draws its own flip, about its vertical axis."""
    from dltrain.data.feed import fit_datasets
    from dltrain.load import load_config
    from dltrain.training.prepare import prepare

    config = tmp_path / "c.yaml"
    config.write_text(AUGMENTED.replace("input_shape: [8, 8, 1]", "input_shape: [8, 8]").replace(
        "    - RandomTranslation: {height_factor: 0.1, width_factor: 0.1}\n", "") + "  shuffle: false\n")
    loaded = load_config(config)
    prepared = prepare(loaded)
    datasets = fit_datasets(prepared.splits, loaded.config.training, loaded.config.seed,
                            list(prepared.model.output_names), prepared.augmentation)
    batch = next(iter(datasets.train))[0].numpy()
    raw = prepared.splits.train.x[:len(batch)]
    assert batch.shape == raw.shape == (16, 8, 8)
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(batch, raw)]
    kept = [np.array_equal(a, b) for a, b in zip(batch, raw)]
    assert all(m != k for m, k in zip(mirrored, kept)), (mirrored, kept)  # each one whole, mirrored or not
    assert 0 < sum(mirrored) < len(batch)  # a draw per image, not one for the batch


def test_augmentation_that_changes_the_shape_is_refused(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(AUGMENTED.replace("RandomFlip: {mode: horizontal}", "RandomCrop: {height: 4, width: 4}"))
    result = invoke("train", config, "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {config}:9:3: dataset.augmentation: augmentation changes the example shape "
                             "from (8, 8, 1) to (4, 4, 1) (prediction would see other shapes: put shape-changing "
                             "layers (RandomCrop) in model.layers instead)\n")
    assert not (tmp_path / "out").exists()


def test_regression_arrays_train_with_keras_short_loss_names(tmp_path: Path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 3)).astype("float32")
    np.savez(tmp_path / "r.npz", x=x, y=x @ np.array([1.0, -2.0, 0.5]))
    config = tmp_path / "c.yaml"
    config.write_text(NPZ.format(path=tmp_path / "r.npz").replace("validation_split: 0.2", "test_split: 0.25")
                      .replace('units: "${dataset.num_classes}", activation: softmax', "units: 1")
                      .replace("loss: sparse_categorical_crossentropy", "loss: mse")
                      .replace("metrics: [accuracy]", "metrics: [mae]"))
    result = invoke("train", config, "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    run = run_folder(result.stdout)
    assert json.loads((run / "dataset.json").read_text())["task"] == "regression"
    assert set(json.loads((run / "metrics.json").read_text())["test"]) == {"loss", "mean_absolute_error"}


def test_shipped_npz_config_trains_one_epoch(tmp_path: Path):
    from conftest import CONFIGS

    x, y = learnable(120, (5,), 4)
    np.savez(tmp_path / "arrays.npz", x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    result = invoke("train", CONFIGS / "npz_arrays.yaml", "--set", f"dataset.path={tmp_path / 'arrays.npz'}",
                    "--set", "training.epochs=1", "--set", "training.tensorboard=false",
                    "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    facts = json.loads((run_folder(result.stdout) / "dataset.json").read_text())
    assert facts["num_classes"] == 4 and facts["sizes"] == {"train": 90, "validation": 10, "test": 20}


def test_data_errors_point_at_the_config_line_of_their_key(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(NPZ.format(path=tmp_path / "nowhere.npz"))
    for command in ("train", "check"):
        result = invoke(command, config, *(["--output-dir", tmp_path / "out", "--no-progress"] if command == "train"
                                           else []))
        assert result.exit_code == 1
        assert result.stderr == (f"error: {config}:4:3: dataset.path: dataset path '{tmp_path / 'nowhere.npz'}' not "
                                 "found (check the path; a relative path is read from the working folder)\n")
