"""The peer: the same models written the way the Keras/TensorFlow tutorials write them.

Float numpy arrays scaled to [0, 1], `model.fit(x, y, epochs=..., batch_size=...)`, `model.evaluate`.
Only what the benchmark needs is added: the Debian IDX files are read with numpy (Keras's
`load_data()` would download), `validation_split` matches the dltrain config's 6,000 validation
examples, and a callback records the same timings dltrain records (epoch seconds, first step).

    python benchmarks/peer.py mlp --epochs 5 --batch-size 32 --result peer.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import time
from pathlib import Path

START = time.time()  # before TensorFlow: start-to-first-step counts the imports, as for dltrain

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402,F401
import keras  # noqa: E402

DATA = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path) -> np.ndarray:
    """An MNIST-format IDX file as a numpy array."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mlp() -> keras.Model:
    """configs/fashion_mnist.yaml's model, minus the Rescaling layer (the data is scaled in numpy)."""
    return keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.2),
        keras.layers.Dense(10, activation="softmax"),
    ])


def cnn() -> keras.Model:
    """configs/fashion_mnist_cnn.yaml's model, minus the Rescaling layer."""
    return keras.Sequential([
        keras.Input(shape=(28, 28)),
        keras.layers.Reshape((28, 28, 1)),
        keras.layers.Conv2D(32, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(64, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dropout(0.25),
        keras.layers.Dense(10, activation="softmax"),
    ])


class Timer(keras.callbacks.Callback):
    """Epoch seconds and the wall clock at the end of the first training step."""

    def __init__(self) -> None:
        super().__init__()
        self.epoch_seconds: list[float] = []
        self.epoch_cpu_seconds: list[float] = []  # all threads: robust to other programs on the machine
        self.first_step: float | None = None
        self._start = self._cpu = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, batch, logs=None):
        if self.first_step is None:
            self.first_step = time.time()

    def on_train_end(self, logs=None):
        self.train_end = time.time()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self.epoch_cpu_seconds.append(time.process_time() - self._cpu)


def main() -> None:
    """Train, evaluate and write the timings as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=["mlp", "cnn"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=None, help="use the first N training images")
    parser.add_argument("--test-size", type=int, default=None, help="use the first N test images")
    parser.add_argument("--early-stopping", type=int, default=None, metavar="PATIENCE",
                        help="EarlyStopping(val_loss, patience, restore_best_weights), as in the CNN config")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()

    keras.utils.set_random_seed(args.seed)
    x_train = read_idx(DATA / "train-images-idx3-ubyte.gz")[: args.train_size]
    y_train = read_idx(DATA / "train-labels-idx1-ubyte.gz")[: args.train_size]
    x_test = read_idx(DATA / "t10k-images-idx3-ubyte.gz")[: args.test_size]
    y_test = read_idx(DATA / "t10k-labels-idx1-ubyte.gz")[: args.test_size]
    x_train, x_test = x_train / 255.0, x_test / 255.0  # the tutorials' line: float64 in [0, 1]

    model = mlp() if args.workload == "mlp" else cnn()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    timer = Timer()
    callbacks: list[keras.callbacks.Callback] = [timer]
    if args.early_stopping:
        callbacks.insert(0, keras.callbacks.EarlyStopping(monitor="val_loss", patience=args.early_stopping,
                                                          restore_best_weights=True))
    # validation_split=0.1: the same 54,000 / 6,000 split sizes dltrain's configs use.
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, validation_split=0.1,
              callbacks=callbacks)  # verbose: Keras's default, as in the tutorials
    begin = time.perf_counter()
    loss, accuracy = model.evaluate(x_test, y_test, batch_size=args.batch_size)
    evaluate_seconds = time.perf_counter() - begin
    args.result.write_text(json.dumps({
        "epoch_seconds": timer.epoch_seconds,
        "epoch_cpu_seconds": timer.epoch_cpu_seconds,
        "train_examples": len(x_train) - int(len(x_train) * 0.1),
        "test_accuracy": float(accuracy),
        "test_examples": len(x_test),
        "evaluate_seconds": evaluate_seconds,
        "first_batch_end": timer.first_step - START,
        "first_batch_index": 0,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "train_end": timer.train_end - START,
        "end": time.time() - START,
    }))


if __name__ == "__main__":
    main()
