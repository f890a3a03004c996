"""`format: tfrecord`: TFRecord shards of tf.train.Examples the tests write (PNG images, int64 labels), streamed,
split by whole files, damaged shards named by file and record, and two workers reading disjoint shards."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, cli, run_folder
from dltrain import data
from dltrain.config import DatasetConfig
from dltrain.data import records
from dltrain.errors import DataError

FEATURES = {"image": {"shape": [], "dtype": "string", "decode": "png"}, "label": {"shape": [], "dtype": "int64"}}
PER_SHARD = 30
CONFIG = """\
name: shards
seed: 3
dataset:
  path: {path}
  format: tfrecord
  features:
    image: {{shape: [], dtype: string, decode: png}}
    label: {{shape: [], dtype: int64}}
  label: label
{extra}model:
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Flatten
    - Dropout: {{rate: 0.1}}
    - Dense: {{units: "${{dataset.num_classes}}", activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer:
  Adam: {{learning_rate: 0.01}}
metrics: [accuracy]
training:
  epochs: {epochs}
  batch_size: 16
  cache: {cache}
  tensorboard: false
"""


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def example(**features) -> bytes:
    """A serialized tf.train.Example: bytes, int and float values by key."""
    import tensorflow as tf

    def feature(value):
        if isinstance(value, bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
        if isinstance(value, float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(
        feature={k: feature(v) for k, v in features.items()})).SerializeToString()


def write_shard(path: Path, records: list[bytes]) -> Path:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)
    return path


def images(shard: int, count: int = PER_SHARD, seed: int = 0) -> list[bytes]:
    """8x8 grayscale images of 3 classes (a bright band per class, plus noise); pixel (0, 0) is 200 + the
    shard's number, so a model input tells which shard it came from."""
    rng = np.random.default_rng([seed, shard])
    out = []
    for i in range(count):
        label = int(rng.integers(0, 3))
        pixels = rng.integers(0, 60, (8, 8)).astype(np.uint8)
        pixels[label * 2: label * 2 + 3, :] += 150
        pixels[0, 0] = 200 + shard
        out.append(example(image=png(pixels), label=label))
    return out


def write_shards(folder: Path, count: int, prefix: str = "train", seed: int = 0) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(count):
        write_shard(folder / f"{prefix}-{shard:02d}.tfrecord", images(shard, seed=seed))
    return str(folder / f"{prefix}-*.tfrecord")


def config(root: Path, path: str, extra: str = "", epochs: int = 2, cache: str = "false") -> Path:
    file = root / "config.yaml"
    file.write_text(CONFIG.format(path=path, extra=extra, epochs=epochs, cache=cache))
    return file


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """6 training shards and a test shard of its own, trained 2 epochs: (root, run folder, output)."""
    root = tmp_path_factory.mktemp("records")
    train = write_shards(root / "data", 6)
    write_shard(root / "data" / "test-00.tfrecord", images(50, seed=1))
    path = config(root, train, extra=f"  test: {{path: {root / 'data' / 'test-*.tfrecord'}}}\n")
    result = cli("train", path, "--output-dir", root / "out", "--no-progress")
    return root, run_folder(result), result.output


def test_shards_train_evaluate_and_predict(trained):
    root, run, output = trained
    assert "note: validation_split 0.1: 1 of 6 shards (30 examples), cut by whole files" in output, output
    described = json.loads((run / "dataset.json").read_text())
    assert described["sizes"] == {"train": 150, "validation": 30, "test": 30}
    assert (described["input_shape"], described["num_classes"]) == ([8, 8, 1], 3)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8  # the bands are easy: far above chance (1/3)
    assert (run / "plots" / "confusion_matrix.png").is_file()
    evaluated = cli("evaluate", run, "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    pixels = np.zeros((8, 8), np.uint8)
    pixels[2:5, :] = 180  # class 1's band
    Image.fromarray(pixels).save(root / "one.png")
    predicted = cli("predict", run, root / "one.png", "--top-k", 1)
    assert predicted.exit_code == 0, predicted.output
    assert re.search(r"one\.png\s*│\s*1 ", predicted.stdout), predicted.stdout


def test_resume_is_bit_identical_to_an_uninterrupted_run(trained):
    import keras

    root, run, _ = trained
    path = config(root, str(root / "data" / "train-*.tfrecord"),
                  extra=f"  test: {{path: {root / 'data' / 'test-*.tfrecord'}}}\n", epochs=1)
    first = run_folder(cli("train", path, "--output-dir", root / "resumed", "--no-progress"))
    resumed = cli("train", path, "--resume", first, "--set", "training.epochs=2", "--force", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    a = keras.saving.load_model(run / "model.keras").get_weights()
    b = keras.saving.load_model(first / "model.keras").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_caches_in_memory_and_in_a_file(tmp_path: Path):
    train = write_shards(tmp_path / "data", 3)
    for cache in ("true", str(tmp_path / "cache" / "c")):
        result = cli("train", config(tmp_path, train, epochs=1, cache=cache), "--output-dir", tmp_path / "out",
                     "--no-progress")
        assert result.exit_code == 0, result.output
    assert sorted(p.name.split("-")[0] for p in (tmp_path / "cache").glob("c*.index")) == ["ctest", "ctrain", "cval"]


def dataset(path: str, **keys) -> DatasetConfig:
    return DatasetConfig(path=path, format="tfrecord", features=FEATURES, **keys)


def test_test_and_validation_splits_are_cut_by_whole_files(tmp_path: Path):
    path = write_shards(tmp_path, 6)
    splits = data.load(dataset(path, test_split=0.3, validation_split=0.2), seed=1)
    files = [set(s.files) for s in (splits.train, splits.val, splits.test)]
    assert [len(f) for f in files] == [3, 1, 2]
    assert set.union(*files) == {str(p) for p in tmp_path.glob("train-*.tfrecord")}
    assert {len(splits.train), len(splits.val), len(splits.test)} == {90, 30, 60}
    assert splits.info.notes == [
        "test_split 0.3: 2 of 6 shards (60 examples), cut by whole files",
        "validation_split 0.2: 1 of 4 shards (30 examples), cut by whole files"]
    assert splits.info.num_classes == 3  # counted from the label key: no num_classes in the config


def damaged_shard(folder: Path, kind: str) -> Path:
    """train-01 damaged at record 4: the file cut inside it, its label missing, its label a float, or its image
    not a PNG."""
    records = images(1)[:4]
    good = png(np.zeros((8, 8), np.uint8))
    if kind == "truncated":
        path = write_shard(folder / "train-01.tfrecord", images(1)[:5])
        path.write_bytes(path.read_bytes()[:-20])
        return path
    bad = {"missing key": example(image=good), "wrong dtype": example(image=good, label=1.0),
           "not an image": example(image=b"GIF89a...", label=1)}[kind]
    return write_shard(folder / "train-01.tfrecord", [*records, bad, *images(1)[5:8]])


MESSAGES = {
    "truncated": "record 4: the file ends inside it (truncated: truncated record at ",
    "missing key": "record 4: Feature: label (data type: int64) is required but could not be found.",
    "wrong dtype": "record 4: Key: label, Index: 0.  Data types don't match. Data type: float but expected type: int64",
    "not an image": "record 4: 'image' is not a PNG image",
}


@pytest.mark.parametrize("kind", list(MESSAGES))
def test_a_damaged_shard_is_an_error_naming_the_file_and_the_record(tmp_path: Path, kind: str):
    write_shards(tmp_path / "data", 3)
    shard = damaged_shard(tmp_path / "data", kind)
    result = cli("train", config(tmp_path, str(tmp_path / "data" / "train-*.tfrecord")), "--output-dir",
                 tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {tmp_path / 'config.yaml'}:4:3: dataset.path: {shard}: {MESSAGES[kind]}")
    assert "(rewrite the shard, or set dataset.skip_damaged: true" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_skip_damaged_leaves_out_and_names_what_it_skipped(tmp_path: Path):
    write_shards(tmp_path, 3)
    shard = damaged_shard(tmp_path, "missing key")
    truncated = write_shard(tmp_path / "train-02.tfrecord", images(2)[:6])
    truncated.write_bytes(truncated.read_bytes()[:-20])
    source = records.read(dataset(str(tmp_path / "train-*.tfrecord"), skip_damaged=True), seed=1)
    assert len(source.train) == 30 + 7 + 5  # shard 0 whole, shard 1 without record 4, shard 2 before record 5
    assert source.info.notes == [
        f"skipped 2 damaged records (skip_damaged): {shard}: record 4: Feature: label (data type: int64) is "
        f"required but could not be found.; {truncated}: records from 5 on (truncated)"]
    # The stream gives exactly the records the labels were read from.
    streamed = data.in_memory(source.train)
    assert len(streamed) == len(source.train) and streamed.x.shape[1:] == (8, 8, 1)
    assert sorted(np.unique(streamed.x[:, 0, 0])) == [200, 201, 202]


def test_an_image_that_does_not_decode_is_named_when_training_reads_it(tmp_path: Path):
    folder = tmp_path / "data"
    write_shards(folder, 2)
    broken = png(np.zeros((8, 8), np.uint8))[:40]  # a PNG's first bytes, then nothing
    shard = write_shard(folder / "train-00.tfrecord", [*images(0)[:3], example(image=broken, label=0), *images(0)[4:]])
    result = cli("train", config(tmp_path, str(folder / "train-*.tfrecord"), extra="  validation_split: 0.0\n"
                                 "  test_split: 0.5\n", epochs=1), "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    assert result.output.startswith(f"error: dataset.path: {shard}: record 3: "), result.output


def test_a_tfrecord_source_needs_its_features_mapped(write_config):
    path = write_config("name: x\ndataset:\n  path: d/*.tfrecord\n  format: tfrecord\n  features: [image]\n"
                        "model:\n  layers: [Flatten]\nloss: mse\noptimizer: adam\n")
    result = cli("config", path)
    assert result.exit_code == 1
    assert result.output.startswith(f"error: {path}:5:3: dataset.features: a tfrecord source needs 'features': "
                                    "a mapping of Example keys to {shape, dtype} (e.g. features: {image: ")


# A layer that passes its input through and, while training, appends the shards it saw (pixel (0, 0) - 200)
# to a file named after the process's task: what each worker of a job read.
RECORDER = '''
import json, os
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf


def task():
    found = json.loads(os.environ.get("TF_CONFIG") or "{}").get("task") or {"type": "single", "index": 0}
    return f"{found['type']}{found['index']}"


class Seen(keras.layers.Layer):
    def __init__(self, folder, **kwargs):
        super().__init__(**kwargs)
        self.folder = folder

    def call(self, x, training=None):
        if not training:
            return x

        def note(values):
            with open(Path(self.folder) / f"{task()}.txt", "a") as handle:
                handle.write(" ".join(str(int(v) - 200) for v in np.unique(values.numpy())) + "\\n")
            return np.int32(0)

        done = tf.py_function(note, [x[:, 0, 0, 0]], tf.int32)
        with tf.control_dependencies([done]):
            return tf.identity(x)

    def get_config(self):
        return {**super().get_config(), "folder": self.folder}
'''


@pytest.mark.slow
def test_two_workers_read_disjoint_shards(tmp_path: Path):
    train = write_shards(tmp_path / "data", 8)
    write_shard(tmp_path / "data" / "test-00.tfrecord", images(50, seed=1))
    (tmp_path / "helpers.py").write_text(RECORDER)
    (tmp_path / "seen").mkdir()
    text = CONFIG.format(path=train, epochs=1, cache="false", extra=(
        f"  test: {{path: {tmp_path / 'data' / 'test-*.tfrecord'}}}\n  validation_split: 0.0\n")) \
        .replace("    - Rescaling:", f"    - Seen: {{folder: {tmp_path / 'seen'}}}\n    - Rescaling:") \
        .replace("training:\n", "custom_objects: [helpers:Seen]\ntraining:\n")
    (tmp_path / "config.yaml").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DLTRAIN_OFFLINE": "1"}
    env.pop("TF_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "dltrain", "train", str(tmp_path / "config.yaml"), "--workers", "2",
                           "--trust-code", "--output-dir", str(tmp_path / "out"), "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: sharded by file: 8 shards over 2 workers, 4 read here; each worker trains on 120 examples an epoch" \
        in done.stdout + done.stderr
    seen = {name: {int(s) for line in (tmp_path / "seen" / f"{name}.txt").read_text().split("\n") for s in line.split()}
            for name in ("worker0", "worker1")}
    assert seen["worker0"] and seen["worker1"]
    assert not seen["worker0"] & seen["worker1"]  # no shard read by both
    assert seen["worker0"] | seen["worker1"] == set(range(8))


def test_image_files_and_shards_are_dealt_to_workers(tmp_path: Path):
    from dltrain.data.workers import worker_part

    path = write_shards(tmp_path, 5)
    train = records.read(dataset(path), seed=1).train
    parts = [worker_part(train, rank, 2) for rank in (0, 1)]
    assert [sorted(Path(f).name for f in p.split.files) for p in parts] == [
        ["train-00.tfrecord", "train-02.tfrecord"], ["train-01.tfrecord", "train-03.tfrecord"]]
    assert [len(p.split) for p in parts] == [60, 60]  # worker 0 was dealt 3 shards: it leaves the last one out
    assert parts[0].note == ("sharded by file: 5 shards over 2 workers, 2 read here; each worker trains on 60 "
                             "examples an epoch (30 left out to keep the workers in step)")
    few = worker_part(train.shards([0]), 0, 2)
    assert not few.by_file and few.split.files == train.files[:1]
    folder = tmp_path / "images"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(folder / name / f"{i}.png")
    files = data.load(DatasetConfig(path=str(folder), format="images", image_size=[4, 4], test_split=0.2,
                                    validation_split=0.0), seed=1).train
    mine = [set(worker_part(files, rank, 2).split.paths) for rank in (0, 1)]
    assert len(mine[0]) == len(mine[1]) == 4 and not mine[0] & mine[1]
