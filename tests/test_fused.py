"""training.fused_batch_norm: TensorFlow's fused kernel trains Keras's own BatchNormalization layers, and
computes what Keras's layer computes (outputs, moving statistics, gradients), where it applies at all."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from conftest import SYNTHETIC
from dltrain.cli import app
from dltrain.training.fused import fuse_batch_norm

runner = CliRunner()
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def twins(shape: tuple[int, ...], policy: str = "float32", **kwargs) -> tuple[keras.Model, keras.Model]:
    """Two one-layer BatchNormalization models with the same (non-default) weights; the second fused."""
    models = []
    for _ in range(2):
        inputs = keras.Input(shape)
        models.append(keras.Model(inputs, keras.layers.BatchNormalization(dtype=policy, **kwargs)(inputs)))
    rng = np.random.default_rng(0)
    for a, b in zip(models[0].weights, models[1].weights):
        value = rng.uniform(0.5, 1.5, a.shape).astype("float32")
        a.assign(value)
        b.assign(value)
    return models[0], models[1]


def fused_ops(model: keras.Model, shape: tuple[int, ...]) -> list[str]:
    """The FusedBatchNorm ops of the model's traced training step."""
    step = tf.function(lambda x: model(x, training=True))
    graph = step.get_concrete_function(tf.TensorSpec((None, *shape), tf.float32)).graph
    return [op.type for op in graph.get_operations() if op.type.startswith("FusedBatchNorm")]


def train_steps(model: keras.Model, x: tf.Tensor, steps: int) -> list[tuple]:
    """Output and gradients (input, then trainable weights) of `steps` training calls, in a tf.function."""
    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = model(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(y))  # a loss whose gradient varies across the batch
        return y, tape.gradient(loss, [x, *model.trainable_weights])
    return [step(x) for _ in range(steps)]


@pytest.mark.parametrize("kwargs", [
    {},
    {"axis": 3, "momentum": 0.9, "epsilon": 1e-4},
    {"center": False},
    {"scale": False, "center": False, "momentum": 0.5},
], ids=["defaults", "axis3-momentum-epsilon", "no-center", "no-scale-no-center"])
def test_fused_training_matches_keras(kwargs):
    shape = (5, 6, 3)
    keras_model, fused_model = twins(shape, **kwargs)
    assert fuse_batch_norm(fused_model) == [fused_model.layers[1].name]
    assert fused_ops(fused_model, shape) == ["FusedBatchNormV3"] and fused_ops(keras_model, shape) == []
    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, (7, *shape)).astype("float32"))
    for (y, grads), (fused_y, fused_grads) in zip(train_steps(keras_model, x, 4), train_steps(fused_model, x, 4)):
        np.testing.assert_allclose(fused_y, y, **TOLERANCE)
        assert len(fused_grads) == len(grads) == 1 + len(keras_model.trainable_weights)
        for fused_grad, grad in zip(fused_grads, grads):
            np.testing.assert_allclose(fused_grad, grad, **TOLERANCE)
    # Four updates of Keras's own moving_mean and moving_variance, with the biased batch variance.
    for fused_weight, weight in zip(fused_model.non_trainable_weights, keras_model.non_trainable_weights):
        assert fused_weight.name == weight.name
        np.testing.assert_allclose(fused_weight.numpy(), weight.numpy(), **TOLERANCE)
    assert not np.allclose(keras_model.layers[1].moving_mean.numpy(), 1.0, atol=0.01)  # they did move
    np.testing.assert_allclose(fused_model(x, training=False), keras_model(x, training=False), **TOLERANCE)


def test_a_batch_of_one_pixel_updates_the_moving_variance_as_keras_does():
    keras_model, fused_model = twins((1, 1, 2))
    fuse_batch_norm(fused_model)
    x = tf.constant([[[[2.0, -1.0]]]])
    for model in (keras_model, fused_model):
        model(x, training=True)
    np.testing.assert_allclose(fused_model.layers[1].moving_variance.numpy(),
                               keras_model.layers[1].moving_variance.numpy(), **TOLERANCE)


@pytest.mark.parametrize("shape, policy, kwargs", [
    ((6, 3), "float32", {}),  # 3-D input
    ((3, 5, 6), "float32", {"axis": 1}),  # channels first
    ((5, 6, 3), "mixed_bfloat16", {}),
    ((5, 6, 3), "float32", {"renorm": True}),
    ((5, 6, 3), "float32", {"synchronized": True}),
    ((5, 6, 3), "float32", {"epsilon": 1e-6}),  # below what cuDNN takes
], ids=["3d", "axis1", "mixed-precision", "renorm", "synchronized", "tiny-epsilon"])
def test_layers_the_kernel_does_not_compute_alike_are_left_alone(shape, policy, kwargs):
    keras_model, model = twins(shape, policy, **kwargs)
    assert fuse_batch_norm(model) == []
    assert "call" not in vars(model.layers[1])
    assert fused_ops(model, shape) == []


def test_inference_masks_and_frozen_layers_run_keras_own_computation():
    keras_model, fused_model = twins((4, 4, 2))
    fuse_batch_norm(fused_model)
    keras_layer, fused_layer = keras_model.layers[1], fused_model.layers[1]
    x = tf.constant(np.random.default_rng(2).normal(1.0, 1.0, (3, 4, 4, 2)).astype("float32"))
    mask = tf.constant(np.random.default_rng(3).uniform(size=(3, 4, 4)) > 0.3)
    np.testing.assert_array_equal(fused_layer(x, training=True, mask=mask), keras_layer(x, training=True, mask=mask))
    np.testing.assert_array_equal(fused_layer.moving_mean.numpy(), keras_layer.moving_mean.numpy())
    np.testing.assert_array_equal(fused_model(x), keras_model(x))  # inference
    for layer in (keras_layer, fused_layer):
        layer.trainable = False  # a frozen layer normalizes with its moving statistics, also in training
    assert fused_ops(fused_model, (4, 4, 2)) == []
    np.testing.assert_array_equal(fused_model(x, training=True), keras_model(x, training=True))


def test_nested_models_are_reached_once():
    inner = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.BatchNormalization(name="inner_bn")])
    inputs = keras.Input((4, 4, 2))
    outer = keras.Model(inputs, keras.layers.BatchNormalization(name="outer_bn")(inner(inputs)))
    assert sorted(fuse_batch_norm(outer)) == ["inner_bn", "outer_bn"]
    assert fuse_batch_norm(outer) == []  # applying twice does not wrap the fused call again
    assert fused_ops(outer, (4, 4, 2)) == ["FusedBatchNormV3", "FusedBatchNormV3"]


CNN = SYNTHETIC.replace("input_shape: [8]", "input_shape: [6, 6, 1]").replace(
    """    - Dense: {units: 16, activation: relu}
    - Dropout: {rate: 0.1}
""", """    - Conv2D: {filters: 4, kernel_size: 3, padding: same, use_bias: false}
    - BatchNormalization
    - ReLU
    - Flatten
""")


def test_prepare_fuses_only_when_asked_and_check_never(write_config):
    from dltrain.load import load_config
    from dltrain.model.builder import check
    from dltrain.training.prepare import prepare

    config = write_config(CNN)
    fused = [layer for layer in prepare(load_config(config)).model.layers if "call" in vars(layer)]
    assert [type(layer) for layer in fused] == [keras.layers.BatchNormalization]
    off = prepare(load_config(config, ["training.fused_batch_norm=false"])).model
    assert not any("call" in vars(layer) for layer in off.layers)
    assert not any("call" in vars(layer) for layer in check(load_config(config)).layers)


PLAIN_KERAS = """\
import sys
import keras
import numpy as np
model = keras.saving.load_model(sys.argv[1])
assert not any(name.startswith("dltrain") for name in sys.modules), "dltrain was imported"
bn = [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]
assert len(bn) == 1 and type(bn[0]) is keras.layers.BatchNormalization, bn
np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
"""


def test_a_fused_run_trains_like_keras_and_saves_a_plain_keras_model(tmp_path: Path, write_config):
    from dltrain import data
    from dltrain.load import load_config

    config = write_config(CNN)
    runs = {}
    for name, sets in (("fused", []), ("keras", ["--set", "training.fused_batch_norm=false"])):
        result = runner.invoke(app, ["train", str(config), "--output-dir", str(tmp_path / name), "--no-progress",
                                     *sets])
        assert result.exit_code == 0, result.output
        runs[name] = Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))
    history = {name: list(csv.DictReader((run / "history.csv").open())) for name, run in runs.items()}
    assert len(history["fused"]) == len(history["keras"]) == 2
    for fused_epoch, keras_epoch in zip(history["fused"], history["keras"]):
        for key in ("loss", "val_loss"):
            assert float(fused_epoch[key]) == pytest.approx(float(keras_epoch[key]), rel=1e-4)

    # Plain Keras, in a process that never imports dltrain, predicts the test split as the trained (fused)
    # model scored it at the end of the run.
    test = data.load(load_config(config).config.dataset, 7).test
    np.save(tmp_path / "x.npy", test.x)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", PLAIN_KERAS, str(runs["fused"] / "model.keras"),
                           str(tmp_path / "x.npy"), str(tmp_path / "plain.npy")],
                          capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    probabilities = np.load(tmp_path / "plain.npy")
    scored = json.loads((runs["fused"] / "metrics.json").read_text())["test"]
    assert float(np.mean(probabilities.argmax(axis=1) == test.y)) == pytest.approx(scored["accuracy"], abs=1e-6)
    loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(test.y)), test.y], 1e-7, 1.0)))
    assert loss == pytest.approx(scored["loss"], rel=1e-5)
