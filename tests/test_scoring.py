"""One pass over the test split gives what `evaluate` and `predict` give, and the run says what it does
after the last epoch."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import SYNTHETIC


def _data(count: int = 203):  # not a multiple of the batch size: the last batch is short
    rng = np.random.default_rng(3)
    return rng.normal(size=(count, 8)).astype("float32"), rng.integers(0, 3, count)


def _model(outputs: str):
    import keras

    inputs = keras.Input((8,))
    hidden = keras.layers.Dense(16, activation="relu", kernel_regularizer="l2", activity_regularizer="l1")(inputs)
    a = keras.layers.Dense(3, activation="softmax", name="a")(hidden)
    if outputs == "one":
        model = keras.Model(inputs, a)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"], steps_per_execution=4)
    else:
        b = keras.layers.Dense(3, name="b")(hidden)
        model = keras.Model(inputs, [a, b])
        model.compile("adam", {"a": "sparse_categorical_crossentropy",
                               "b": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
                      loss_weights={"a": 1.0, "b": 0.5},
                      metrics={"a": ["accuracy"], "b": ["accuracy"]}, steps_per_execution=4)
    return model


@pytest.mark.parametrize("outputs", ["one", "two"])
def test_score_gives_evaluate_and_predict_in_one_pass(outputs):
    import tensorflow as tf

    from dltrain.training.scoring import score

    x, y = _data()
    model = _model(outputs)
    labels = y if outputs == "one" else {"a": y, "b": y}
    model.fit(x, labels, epochs=1, batch_size=32, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, labels)).batch(32)

    scored = score(model, dataset)
    evaluated = model.evaluate(dataset, return_dict=True, verbose=0)
    predicted = model.predict(x, batch_size=32, verbose=0)

    assert list(scored.metrics) == list(evaluated)  # the same names, in the same order
    for name, value in evaluated.items():
        assert scored.metrics[name] == pytest.approx(value, rel=1e-6, abs=1e-7), name
    for mine, keras_own in zip(tf.nest.flatten(scored.outputs), tf.nest.flatten(predicted)):
        assert mine.shape == keras_own.shape
        np.testing.assert_allclose(mine, keras_own, rtol=1e-6, atol=1e-7)


def test_train_shows_what_it_does_after_the_last_epoch(tmp_path: Path, write_config):
    from typer.testing import CliRunner

    from dltrain.cli import app

    result = CliRunner().invoke(app, ["train", str(write_config(SYNTHETIC)), "--output-dir", str(tmp_path / "out"),
                                      "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    line = re.search(r"^finished: test split scored, model and report saved \((\d+\.\d)s after the last epoch\)$",
                     result.stderr, re.M)
    assert line is not None, result.stderr
    (run,) = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["accuracy.png", "confusion_matrix.png", "loss.png"]


def _splits(count: int = 40):
    from dltrain import data

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (count, 8, 8)).astype("uint8"), rng.integers(0, 3, count)
    info = data.DatasetInfo(name="tiny", input_shape=(8, 8), num_classes=3, class_names=["a", "b", "c"])
    return data.Splits(train=data.Split(x, y), val=None, test=data.Split(x, y), info=info)


ROWS = [{"epoch": 1, "loss": 1.0, "accuracy": 0.4, "val_loss": 1.1, "val_accuracy": 0.3},
        {"epoch": 2, "loss": 0.8, "accuracy": 0.5, "val_loss": 0.9, "val_accuracy": 0.45}]


def test_a_signal_while_the_run_finishes_lets_it_finish_and_says_so(tmp_path: Path, write_config,
                                                                    monkeypatch: pytest.MonkeyPatch):
    import signal

    from typer.testing import CliRunner

    from conftest import signal_while_finishing
    from dltrain.cli import app

    signal_while_finishing(monkeypatch, signal.SIGINT)  # Ctrl-C while the test split is scored
    result = CliRunner().invoke(app, ["train", str(write_config(SYNTHETIC)), "--output-dir", str(tmp_path / "out"),
                                      "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "note: SIGINT arrived while the run was finishing; it finished and saved everything\n" in result.stderr
    (run,) = (tmp_path / "out").iterdir()
    assert (run / "model.keras").is_file() and (run / "metrics.json").is_file()


def test_the_curves_are_drawn_while_the_test_split_is_scored_and_the_test_plots_from_its_outputs(tmp_path: Path):
    from dltrain.training.report import Drawing

    splits = _splits()
    drawing = Drawing(tmp_path, ROWS, splits)  # the curves need nothing more
    probabilities = np.eye(3)[(splits.test.y + 1) % 3] * 0.9 + 0.05  # every example wrong, confidently
    drawing.test_outputs(probabilities)
    assert drawing.wait() == []
    assert sorted(p.name for p in drawing.written) == ["accuracy.png", "confusion_matrix.png", "loss.png",
                                                       "misclassified.png"]


def test_a_scoring_that_fails_leaves_the_curves_and_no_waiting_thread(tmp_path: Path):
    from dltrain.training.report import Drawing

    drawing = Drawing(tmp_path, ROWS, _splits())
    drawing.cancel()
    assert drawing.wait() == []
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["accuracy.png", "loss.png"]


def test_pyplot_is_imported_while_the_model_trains():
    import subprocess
    import sys

    code = ("import sys, threading\nfrom dltrain.runs import plots\nassert 'matplotlib.pyplot' not in sys.modules\n"
            "plots.warm_up()\n[t.join() for t in threading.enumerate() if t.name == 'dltrain-pyplot']\n"
            "import matplotlib\nprint('matplotlib.pyplot' in sys.modules, matplotlib.get_backend())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "Agg"]


def test_small_examples_are_scored_in_bigger_batches_and_nothing_else_changes():
    from dltrain import data
    from dltrain.data.feed import MAX_SCORING_BATCH, scoring_batch_size

    y = np.zeros(10, dtype=int)
    images = data.Split(np.zeros((10, 28, 28), np.uint8), y)  # 784 bytes an example
    assert scoring_batch_size(images, 32) == MAX_SCORING_BATCH
    columns = data.Split({"a": np.zeros((10,), np.float32), "b": np.zeros((10, 3), np.int64)}, y)
    assert scoring_batch_size(columns, 64) == MAX_SCORING_BATCH
    large = data.Split(np.zeros((10, 224, 224, 3), np.float32), y)  # 602 kB: 6 fit in 4 MB
    assert scoring_batch_size(large, 16) == 16
    assert scoring_batch_size(data.Split(np.zeros((10, 64, 64, 3), np.uint8), y), 8) == 341
    texts = data.Split(np.array(["a b", "c"] * 5), y)  # strings: their vectorized size is the model's
    assert scoring_batch_size(texts, 32) == 32


def test_the_runs_test_figures_are_model_evaluate_at_the_training_batch(tmp_path: Path, write_config):
    import json

    from typer.testing import CliRunner

    from dltrain.cli import app
    from dltrain.load import load_config
    from dltrain.model.saved import load_run_model
    from dltrain import data

    path = write_config(SYNTHETIC)
    result = CliRunner().invoke(app, ["train", str(path), "--output-dir", str(tmp_path / "out"), "--no-progress",
                                      "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "out").iterdir()
    loaded = load_config(run / "config.yaml")
    splits = data.load(loaded.config.dataset, loaded.config.seed)
    model = load_run_model(run)
    batch = loaded.config.training.batch_size
    assert batch < len(splits.test) <= 1024  # scored in one batch, evaluated here in several
    expected = model.evaluate(splits.test.x, splits.test.y, batch_size=batch, return_dict=True, verbose=0)
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert test.keys() == expected.keys()
    for name, value in expected.items():
        assert test[name] == pytest.approx(value, rel=1e-6, abs=1e-6), name
