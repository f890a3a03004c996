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

    from dltrain.scoring import score

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
