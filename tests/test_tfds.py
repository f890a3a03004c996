"""`format: tfds`: TensorFlow Datasets names, offline: catalog datasets under tfds.testing.mock_data (random
examples with the real features), and a tiny dataset of our own, really prepared in tmp_path."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from typer.testing import CliRunner

from dltrain import data
from dltrain.cli import app
from dltrain.config import DatasetConfig
from dltrain.errors import DataError


class DltrainTiny(tfds.core.GeneratorBasedBuilder):
    """40 examples of 4 numbers; 'high' ones are shifted by +3. Only a train split, as many TFDS datasets."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict({"x": tfds.features.Tensor(shape=(4,), dtype=np.float32),
                                               "label": tfds.features.ClassLabel(names=["low", "high"])})
        return tfds.core.DatasetInfo(builder=self, features=features, supervised_keys=("x", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(40)}

    def _generate_examples(self, count: int):
        rng = np.random.default_rng(0)
        for i in range(count):
            yield i, {"x": (rng.normal(size=4) + 3 * (i % 2)).astype(np.float32), "label": i % 2}


class DltrainUnpaired(DltrainTiny):
    """The same examples with no supervised_keys: TFDS cannot give (input, label) pairs."""

    def _info(self) -> tfds.core.DatasetInfo:
        info = super()._info()
        return tfds.core.DatasetInfo(builder=self, features=info.features)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir where dltrain_tiny is prepared (TFDS writes its TFRecords and dataset_info.json)."""
    root = tmp_path_factory.mktemp("tfds")
    tfds.builder("dltrain_tiny", data_dir=str(root)).download_and_prepare()
    return root


def tfds_config(name: str, **keys) -> DatasetConfig:
    return DatasetConfig(format="tfds", name=name, **keys)


def error_of(config: DatasetConfig) -> str:
    with pytest.raises(DataError) as info:
        data.load(config, 0)
    return str(info.value)


def test_missing_tensorflow_datasets_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # `import tensorflow_datasets` now fails
    with pytest.raises(DataError) as info:
        data.describe(tfds_config("mnist"))
    assert str(info.value) == ("dataset.format: TensorFlow Datasets is not installed "
                               "(pip install 'dltrain[tfds]', or use a built-in dataset or a path)")


def test_unknown_name_suggests_the_nearest():
    with pytest.raises(DataError) as info:
        data.describe(tfds_config("dltrain_tinny"))
    assert str(info.value) == ("dataset.name: TensorFlow Datasets has no dataset 'dltrain_tinny' "
                               "(did you mean 'dltrain_tiny' or 'dltrain_unpaired'?)")


def test_a_dataset_without_input_label_pairs_is_refused():
    with pytest.raises(DataError) as info:
        data.describe(tfds_config("dltrain_unpaired"))
    assert str(info.value) == (
        "dataset.name: 'dltrain_unpaired' has no single (input, label) pair in TensorFlow Datasets (its "
        "supervised_keys: None) (dltrain reads a TFDS dataset with as_supervised=True; pick one that has supervised_keys)")


def test_not_prepared_offline_says_where_it_looked(tmp_path: Path):
    assert error_of(tfds_config("mnist", data_dir=str(tmp_path))) == (
        f"dataset.data_dir: TensorFlow Datasets' 'mnist' is not prepared in {tmp_path}/mnist/3.0.1 and downloads "
        "are off (DLTRAIN_OFFLINE=1) (prepare it where there is network (tfds build mnist --data_dir DIR) and set "
        "data_dir to DIR's copy here)")


def test_a_prepared_dataset_is_read_and_a_missing_test_split_carved(tiny_dir: Path):
    config = tfds_config("dltrain_tiny", data_dir=str(tiny_dir))
    info = data.describe(config)
    assert (info.input_shape, info.num_classes, info.class_names) == ((4,), 2, ["low", "high"])
    splits = data.load(config, seed=0)  # no test split of its own: the default one
    assert splits.info.sizes == {"train": 29, "validation": 3, "test": 8} and splits.info.test_split == 0.2
    assert splits.info.notes == ["'dltrain_tiny' has no test split of its own: test_split 0.2 of it is carved from "
                                 "the seed (set dataset.test_split, or a dataset.test source, to choose)"]
    splits = data.load(config.model_copy(update={"test_split": 0.25}), seed=0)
    assert splits.info.sizes == {"train": 27, "validation": 3, "test": 10}
    x = np.concatenate([splits.train.x, splits.val.x, splits.test.x])
    y = np.concatenate([splits.train.y, splits.val.y, splits.test.y])
    assert x.dtype == np.float32 and sorted(y.tolist()) == [0] * 20 + [1] * 20
    assert x[y == 1].mean() - x[y == 0].mean() > 2  # the generated examples, each with its own label


def test_catalog_images_with_their_test_split_under_mock_data():
    with tfds.testing.mock_data(num_examples=12):
        config = tfds_config("mnist", validation_split=0.25)
        info = data.describe(config)
        splits = data.load(config, seed=0)
    assert (info.input_shape, info.num_classes, info.class_names[:2]) == ((28, 28, 1), 10, ["0", "1"])
    assert splits.info.sizes == {"train": 9, "validation": 3, "test": 12}
    assert splits.train.x.dtype == np.uint8 and splits.train.x.shape == (9, 28, 28, 1)


def test_images_of_different_sizes_are_resized_to_image_size():
    with tfds.testing.mock_data(num_examples=6):
        config = tfds_config("tf_flowers", image_size=[16, 12], test_split=0.5, validation_split=0.0)
        assert data.describe(config).input_shape == (16, 12, 3)
        splits = data.load(config, seed=0)
    assert splits.train.x.shape == (3, 16, 12, 3) and splits.train.x.dtype == np.uint8


def test_text_datasets_get_an_adapted_text_vectorization():
    import keras

    with tfds.testing.mock_data(num_examples=8):
        config = tfds_config("imdb_reviews", max_tokens=30, output_mode="count")
        splits = data.load(config, seed=0)
    assert splits.info.input_shape == (30,) and splits.info.class_names == ["neg", "pos"]
    assert isinstance(splits.train.x[0], str)
    raw, vectors = splits.preprocessing(splits.train)
    counts = keras.Model(raw, vectors).predict(splits.test.x, verbose=0)
    assert counts.shape == (8, 30) and counts.sum() > 0


def test_text_vectors_need_max_tokens():
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(DataError) as info:
            data.describe(tfds_config("imdb_reviews", output_mode="multi_hot"))
    assert str(info.value) == ("dataset.output_mode: output_mode 'multi_hot' needs max_tokens (the length of each "
                               "text's vector) (add e.g. 'max_tokens: 20000' under 'dataset')")


TFDS_CONFIG = """\
name: tfds-mnist
seed: 3
dataset: {format: tfds, name: mnist, validation_split: 0.2}
model:
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Flatten
    - Dense: {units: "${dataset.num_classes}", activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
training: {epochs: 1, batch_size: 8}
"""


def test_train_and_evaluate_a_tfds_dataset(tmp_path: Path, write_config):
    config = write_config(TFDS_CONFIG)
    runner = CliRunner()
    with tfds.testing.mock_data(num_examples=20):
        result = runner.invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress"])
        assert result.exit_code == 0, result.output
        run = Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))
        evaluated = runner.invoke(app, ["evaluate", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    described = json.loads((run / "dataset.json").read_text())
    assert described["input_shape"] == [28, 28, 1] and described["sizes"] == {"train": 16, "validation": 4, "test": 20}
    # mock_data draws the same examples again: evaluate scores the saved model on the same test split.
    saved = json.loads((run / "metrics.json").read_text())["test"]
    assert json.loads(evaluated.stdout)["loss"] == pytest.approx(saved["loss"], rel=1e-5)


def test_shipped_tf_flowers_config_trains_on_mock_data(tmp_path: Path):
    from conftest import CONFIGS

    with tfds.testing.mock_data(num_examples=24):
        result = CliRunner().invoke(app, [
            "train", str(CONFIGS / "tfds_tf_flowers.yaml"), "--output-dir", str(tmp_path / "out"), "--no-progress",
            "--set", f"dataset.data_dir={tmp_path}", "--set", "dataset.image_size=[16,16]",
            "--set", "training.epochs=1", "--set", "training.tensorboard=false"])
    assert result.exit_code == 0, result.output
    run = Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))
    described = json.loads((run / "dataset.json").read_text())
    assert described["input_shape"] == [16, 16, 3] and described["num_classes"] == 5
    assert described["class_names"] == ["dandelion", "daisy", "tulips", "sunflowers", "roses"]
