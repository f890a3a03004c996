"""Input throughput and memory of streamed sources: dltrain's `format: tfrecord` against a hand-written
`tf.data.TFRecordDataset` pipeline as the TensorFlow guide writes it (map(parse) with decoding, batch,
prefetch), and dltrain's `format: hf` against `datasets`' own `to_tf_dataset`, on PNG-encoded 28x28 images
(Fashion-MNIST's, repeated to the size asked) in a trivial Dense model.

Every measurement runs in a fresh process: examples/s is the training examples over the seconds of the second
epoch (the first traces the functions), from its start to the end of its last step; CPU is that epoch's CPU seconds (all threads) per 1,000 examples, which
other programs on a shared machine move less than the wall clock; the peak RSS is the process's own high-water
mark (VmHWM: ru_maxrss would include the parent's memory at fork).

    python benchmarks/records.py                      # 100,000 images in 16 shards, and 10,000 for memory
    python benchmarks/records.py --examples 20000 --small 5000 --reps 1    # quick
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
BATCH = 128
EPOCHS = 2


def fashion(count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` Fashion-MNIST training images and labels (repeated past 60,000), or seeded noise without the files."""
    file = DEBIAN / "train-images-idx3-ubyte.gz"
    if file.is_file():
        with gzip.open(file) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(DEBIAN / "train-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
    else:
        rng = np.random.default_rng(0)
        images, labels = rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8), rng.integers(0, 10, 1000)
    index = np.arange(count) % len(images)
    return images[index], labels[index].astype(np.int64)


def pngs(images: np.ndarray) -> list[bytes]:
    from PIL import Image

    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def write_shards(folder: Path, images: np.ndarray, labels: np.ndarray, shards: int) -> str:
    """TFRecord shards of tf.train.Examples {image: PNG bytes, label: int64}; returns their glob."""
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    encoded = pngs(images)
    for s in range(shards):
        with tf.io.TFRecordWriter(str(folder / f"train-{s:05d}-of-{shards:05d}.tfrecord")) as writer:
            for i in range(s, len(encoded), shards):
                writer.write(tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded[i]])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(labels[i])]))}))
                    .SerializeToString())
    return str(folder / "train-*.tfrecord")


def write_hf(folder: Path, images: np.ndarray, labels: np.ndarray) -> str:
    """A Dataset folder (save_to_disk) with an Image column and a ClassLabel."""
    import datasets

    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[str(i) for i in range(10)])})
    data = {"image": [{"bytes": b, "path": None} for b in pngs(images)], "label": labels.tolist()}
    datasets.Dataset.from_dict(data, features=features).save_to_disk(str(folder))
    return str(folder)


CONFIG = """name: bench
seed: 1
dataset:
{source}
  validation_split: 0.0
  test_split: {test_split}
model:
  layers:
    - Rescaling: {{scale: 0.00392156862745098}}
    - Flatten
    - Dense: {{units: 10, activation: softmax}}
loss: sparse_categorical_crossentropy
optimizer: adam
metrics: [accuracy]
training:
  epochs: {epochs}
  batch_size: {batch}
  cache: false
  tensorboard: false
"""
TFRECORD = """  path: {path}
  format: tfrecord
  features:
    image: {{shape: [], dtype: string, decode: png}}
    label: {{shape: [], dtype: int64}}
  num_classes: 10"""
HF = """  path: {path}
  format: hf
  features: [image]"""


class Timer:
    """A Keras callback: seconds of each epoch."""

    def __new__(cls):
        import keras

        class EpochTimer(keras.callbacks.Callback):
            seconds: list[float] = []
            cpu: list[float] = []

            def on_epoch_begin(self, epoch, logs=None):
                self.start, self.cpu_start = time.perf_counter(), time.process_time()

            def on_train_batch_end(self, batch, logs=None):
                # The end of the epoch's last step: what callbacks do at the epoch's end (dltrain writes its
                # checkpoint and best.keras there) is not input throughput.
                self.end, self.cpu_end = time.perf_counter(), time.process_time()

            def on_epoch_end(self, epoch, logs=None):
                EpochTimer.seconds.append(self.end - self.start)
                EpochTimer.cpu.append(self.cpu_end - self.cpu_start)

        return EpochTimer()


def model():
    import keras

    m = keras.Sequential([keras.Input((28, 28, 1), dtype="uint8"), keras.layers.Rescaling(1 / 255),
                          keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


def child(kind: str, path: str, count: int, out: str) -> None:
    """One measurement in this process; writes {examples_per_s, max_rss_mb} to `out`."""
    record: dict = {}
    if kind.startswith("dltrain"):
        source = (TFRECORD if kind == "dltrain-tfrecord" else HF).format(path=path)
        # The test split dltrain carves (one shard of 16, 1/16 of the rows) trains no example: leave it out.
        text = CONFIG.format(source=source, test_split=0.0625, epochs=EPOCHS, batch=BATCH)
        folder = Path(tempfile.mkdtemp())
        (folder / "bench.yaml").write_text(text)
        import keras
        seen = Timer()
        original = keras.Model.fit

        def fit(self, *args, **kwargs):
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), seen]
            return original(self, *args, **kwargs)

        keras.Model.fit = fit
        try:
            from dltrain.cli.app import app
        except ImportError:  # the layout before cli/ was a package
            from dltrain.cli import app
        try:
            app(["train", str(folder / "bench.yaml"), "--no-progress", "--output-dir", str(folder / "out")])
        except SystemExit as exit_:
            if exit_.code:
                raise
        rows = json.loads(next((folder / "out").glob("*/dataset.json")).read_text())["sizes"]["train"]
        record["examples"] = rows
    elif kind == "tf-guide":
        import tensorflow as tf

        spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

        def parse(serialized):  # the TFRecord guide's parse function, with the image decoded
            example = tf.io.parse_single_example(serialized, spec)
            return tf.io.decode_png(example["image"], channels=1), example["label"]

        import glob
        files = sorted(glob.glob(path))[1:]  # the same 15 shards dltrain trains on (it tests on one)
        ds = tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE) \
            .batch(BATCH).prefetch(tf.data.AUTOTUNE)
        seen = Timer()
        model().fit(ds, epochs=EPOCHS, callbacks=[seen], verbose=0)
        record["examples"] = count * 15 // 16
    elif kind == "hf-to_tf_dataset":
        import datasets

        data = datasets.load_from_disk(path)
        ds = data.to_tf_dataset(columns="image", label_cols="label", batch_size=BATCH, shuffle=True)
        seen = Timer()
        model().fit(ds.map(lambda x, y: (x[..., None], y)), epochs=EPOCHS, callbacks=[seen], verbose=0)
        record["examples"] = len(data)
    timer = type(seen)
    record["examples_per_s"] = record["examples"] / timer.seconds[-1]
    record["cpu_ms_per_1000"] = 1000 * timer.cpu[-1] / record["examples"] * 1000
    status = Path("/proc/self/status").read_text()
    record["max_rss_mb"] = int(status.split("VmHWM:")[1].split()[0]) / 1024
    Path(out).write_text(json.dumps(record))


def measure(kind: str, path: str, count: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "DLTRAIN_OFFLINE": "1"}
        subprocess.run([sys.executable, __file__, "child", kind, path, str(count), out.name], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(Path(out.name).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000, help="the smaller dataset of the memory rows")
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--folder", default=None, help="where the data is written (default: a temp folder)")
    args = parser.parse_args()
    folder = Path(args.folder or tempfile.mkdtemp(prefix="dltrain-records-"))
    data = {}
    for count in (args.small, args.examples):
        if (folder / f"hf-{count}").exists():  # written by an earlier run into the same --folder
            data[count] = (str(folder / f"tfrecord-{count}" / "train-*.tfrecord"), str(folder / f"hf-{count}"))
            continue
        images, labels = fashion(count)
        data[count] = (write_shards(folder / f"tfrecord-{count}", images, labels, args.shards),
                       write_hf(folder / f"hf-{count}", images, labels))
        del images, labels
    pairs = [("tfrecord", "dltrain-tfrecord", "tf-guide", 0), ("hf", "dltrain-hf", "hf-to_tf_dataset", 1)]
    print("| source | examples | dltrain examples/s | peer | peer examples/s | speed-up | CPU ms per 1,000 examples "
          "dltrain / peer | peak RSS dltrain / peer |")
    print("|---|---|---|---|---|---|---|---|")
    for name, ours, peer, which in pairs:
        for count in (args.examples, args.small):
            path = data[count][which]
            runs = {ours: [], peer: []}
            for rep in range(args.reps if count == args.examples else 1):
                for kind in ((ours, peer) if rep % 2 == 0 else (peer, ours)):  # alternate who goes first
                    runs[kind].append(measure(kind, path, count))
            speed = {k: statistics.median(r["examples_per_s"] for r in v) for k, v in runs.items()}
            cpu = {k: statistics.median(r["cpu_ms_per_1000"] for r in v) for k, v in runs.items()}
            rss = {k: max(r["max_rss_mb"] for r in v) for k, v in runs.items()}
            print(f"| {name} | {count:,} | {speed[ours]:,.0f} | {peer} | {speed[peer]:,.0f} | "
                  f"{speed[ours] / speed[peer]:.2f}x | {cpu[ours]:,.0f} / {cpu[peer]:,.0f} | "
                  f"{rss[ours]:,.0f} / {rss[peer]:,.0f} MB |", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5])
    else:
        main()
