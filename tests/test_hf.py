"""`format: hf`: Hugging Face datasets the tests save with save_to_disk (a DatasetDict folder, a Dataset folder),
read through their Arrow files: image, number and text columns, ClassLabel names, and a hub name offline."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import cli, run_folder

datasets = pytest.importorskip("datasets")

CLASSES = ["ant", "bee", "cat"]
CONFIG = """\
name: hf
seed: 5
dataset:
  path: {path}
  format: hf
{extra}model:
  layers:
{layers}loss: sparse_categorical_crossentropy
optimizer:
  Adam: {{learning_rate: 0.01}}
metrics: [accuracy]
training:
  epochs: {epochs}
  batch_size: 16
  tensorboard: false
"""
IMAGE_LAYERS = """\
    - Rescaling: {scale: 0.00392156862745098}
    - Flatten
    - Dense: {units: 3, activation: softmax}
"""


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def table(count: int, seed: int) -> datasets.Dataset:
    """Rows of an 8x8 image (a bright band per class), a 4-number vector, a text and a ClassLabel."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    pictures = []
    for label in labels:
        pixels = rng.integers(0, 60, (8, 8)).astype(np.uint8)
        pixels[label * 2: label * 2 + 3, :] += 150
        pictures.append({"bytes": png(pixels), "path": None})
    vectors = (np.eye(4)[labels] * 3 + rng.normal(0, 0.3, (count, 4))).astype(np.float32)
    texts = [f"{['small', 'busy', 'lazy'][c]} {['ant', 'bee', 'cat'][c]} here" for c in labels]
    features = datasets.Features({"image": datasets.Image(), "vector": datasets.Sequence(datasets.Value("float32"), length=4),
                                  "text": datasets.Value("string"), "label": datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict({"image": pictures, "vector": vectors.tolist(), "text": texts,
                                       "label": labels.tolist()}, features=features)


def config(root: Path, path: Path | str, extra: str = "", layers: str = IMAGE_LAYERS, epochs: int = 2) -> Path:
    file = root / "config.yaml"
    file.write_text(CONFIG.format(path=path, extra=extra, layers=layers, epochs=epochs))
    return file


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A DatasetDict folder (train, validation, test) trained on its image column: (root, run folder)."""
    root = tmp_path_factory.mktemp("hf")
    datasets.DatasetDict({"train": table(160, 0), "validation": table(32, 1), "test": table(48, 2)}) \
        .save_to_disk(str(root / "dict"))
    result = cli("train", config(root, root / "dict", extra="  features: [image]\n  label: label\n"),
                 "--output-dir", root / "out", "--no-progress")
    return root, run_folder(result)


def test_a_datasetdict_folder_trains_evaluates_and_predicts(trained):
    root, run = trained
    described = json.loads((run / "dataset.json").read_text())
    assert described["class_names"] == CLASSES  # from the ClassLabel feature
    assert described["sizes"] == {"train": 160, "validation": 32, "test": 48}  # the dict's own splits
    assert described["input_shape"] == [8, 8, 1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    evaluated = cli("evaluate", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    pixels = np.zeros((8, 8), np.uint8)
    pixels[4:7, :] = 180  # class 2's band
    Image.fromarray(pixels).save(root / "one.png")
    predicted = cli("predict", run, root / "one.png", "--top-k", 1)
    assert predicted.exit_code == 0, predicted.output
    assert re.search(r"one\.png\s*│\s*cat ", predicted.stdout), predicted.stdout


def test_streamed_rows_train_exactly_as_the_rows_in_memory(trained, tmp_path: Path):
    import keras

    root, run = trained  # trained with cache: true (the default): decoded once into memory
    streamed = run_folder(cli("train", config(tmp_path, root / "dict", extra="  features: [image]\n"),
                              "--set", "training.cache=false", "--output-dir", tmp_path / "out", "--no-progress"))
    weights = [keras.saving.load_model(r / "model.keras").get_weights() for r in (run, streamed)]
    assert all(np.array_equal(a, b) for a, b in zip(*weights))  # the same (seed, epoch) order, batch for batch


def test_a_dataset_folder_of_numbers_carves_its_test_split(tmp_path: Path):
    table(100, 3).save_to_disk(str(tmp_path / "one"))
    layers = "    - Dense: {units: 3, activation: softmax}\n"
    result = cli("train", config(tmp_path, tmp_path / "one", extra="  features: vector\n", layers=layers, epochs=1),
                 "--output-dir", tmp_path / "out", "--no-progress")
    run = run_folder(result)
    assert "note: 'one' has no test split of its own: test_split 0.2 of it is carved from the seed" in result.output
    described = json.loads((run / "dataset.json").read_text())
    assert described["sizes"] == {"train": 72, "validation": 8, "test": 20}
    assert described["input_shape"] == [4]


def test_a_text_column_goes_through_textvectorization(tmp_path: Path):
    datasets.DatasetDict({"train": table(60, 4), "test": table(20, 5)}).save_to_disk(str(tmp_path / "texts"))
    layers = ("    - Embedding: {input_dim: 20, output_dim: 4}\n    - GlobalAveragePooling1D\n"
              "    - Dense: {units: 3, activation: softmax}\n")
    extra = "  features: [text]\n  max_tokens: 20\n  output_sequence_length: 3\n"
    run = run_folder(cli("train", config(tmp_path, tmp_path / "texts", extra=extra, layers=layers, epochs=1),
                         "--output-dir", tmp_path / "out", "--no-progress"))
    assert json.loads((run / "dataset.json").read_text())["input_shape"] == [3]
    (tmp_path / "t.txt").write_text("busy bee here")
    assert cli("predict", run, tmp_path / "t.txt").exit_code == 0


def test_a_hub_name_offline_is_one_line_naming_save_to_disk(tmp_path: Path):
    result = cli("train", config(tmp_path, "zalando-datasets/fashion_mnist", extra="  features: [image]\n"),
                 "--no-progress", "--output-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output == (
        f"error: {tmp_path / 'config.yaml'}:4:3: dataset.path: 'zalando-datasets/fashion_mnist' is not a folder "
        "here, and the Hugging Face Hub is offline (ConnectionError) (on a machine online: datasets.load_dataset("
        "'zalando-datasets/fashion_mnist').save_to_disk('FOLDER'); copy FOLDER here and give its path)\n")


def test_an_unknown_column_names_the_columns(trained, tmp_path: Path):
    root, _ = trained
    result = cli("train", config(tmp_path, root / "dict", extra="  features: [picture]\n"), "--no-progress",
                 "--output-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert result.output.endswith("dataset.features: the dataset has no column 'picture' (its columns: image, "
                                  "vector, text, label)\n"), result.output
