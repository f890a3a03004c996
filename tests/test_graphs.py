"""Graphs end to end: several outputs, custom objects, safe_mode, the residual config, the JSON Schema."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import keras
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conftest import CONFIGS
from keras_graph import assert_same_graph
from dltrain.cli import app
from dltrain.load import load_config
from dltrain.errors import ConfigError, DltrainError
from dltrain.model.builder import check
from dltrain.model.schema import config_schema

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def train(config: Path, out: Path, *options: str) -> Path:
    result = invoke("train", config, "--output-dir", out, "--no-progress", *options)
    assert result.exit_code == 0, result.output
    return Path(re.search(r"^run folder: (.+)$", result.stdout.strip(), re.M).group(1))


MULTI = """\
name: multi
seed: 5
dataset: {name: synthetic, input_shape: [8], num_classes: 3, train_size: 200, test_size: 60}
model:
  layers:
    - Dense: {name: hidden, units: 16, activation: relu}
    - Dense: {name: label, units: "${dataset.num_classes}", activation: softmax}
    - Dense: {name: aux, inputs: hidden, units: 3, activation: softmax}
  outputs: [label, aux]
loss: {label: sparse_categorical_crossentropy, aux: sparse_categorical_crossentropy}
loss_weights: {label: 1.0, aux: 0.3}
metrics: {label: [accuracy], aux: [accuracy]}
optimizer: {Adam: {learning_rate: 0.01}}
"""


def test_a_model_with_two_outputs_trains_and_evaluates(write_config, tmp_path):
    run = train(write_config(MULTI), tmp_path / "out")
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"loss", "label_loss", "aux_loss", "label_accuracy", "aux_accuracy"}
    # the weighted total is what Keras optimizes: label_loss + 0.3 * aux_loss
    test = metrics["test"]
    # (Keras averages each tracker over batches on its own, so the match is close, not exact)
    assert test["loss"] == pytest.approx(test["label_loss"] + 0.3 * test["aux_loss"], rel=1e-2)
    assert test["loss"] < 0.8 * (test["label_loss"] + test["aux_loss"])
    result = invoke("evaluate", run, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == pytest.approx(metrics["test"], rel=1e-5)


def test_one_metric_list_is_given_to_every_output(write_config, tmp_path):
    text = MULTI.replace("metrics: {label: [accuracy], aux: [accuracy]}", "metrics: [accuracy]")
    model = check(load_config(write_config(text)))
    assert model.output_names == ["label", "aux"]
    run = train(write_config(text), tmp_path / "out")
    assert {"label_accuracy", "aux_accuracy"} <= set(json.loads((run / "metrics.json").read_text())["test"])


def test_several_inputs_need_a_dataset_with_several_arrays(write_config, tmp_path):
    text = MULTI.replace("model:\n  layers:\n    - Dense: {name: hidden,",
                         "model:\n  inputs: {features: [8], extra: [2]}\n  layers:\n    - Concatenate: {name: joined, "
                         "inputs: [features, extra]}\n    - Dense: {name: hidden,")
    check(load_config(write_config(text)))  # the graph itself is fine
    result = invoke("train", write_config(text), "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "model.inputs: the model has 2 inputs (features, extra) but dataset 'synthetic' gives one array per example "
        "(use a single input, or a dataset with named features)\n")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


CUSTOM_MODULE = '''
import keras

class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}

def double(x):
    return 2.0 * x

def focal(y_true, y_pred):
    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
'''

CUSTOM = """\
name: custom
seed: 3
dataset: {name: synthetic, input_shape: [8], num_classes: 3, train_size: 120, test_size: 30}
custom_objects: [my_blocks:Scale, my_blocks:focal]
model:
  layers:
    - Scale: {factor: 0.5}
    - Dense: {units: 3, activation: softmax}
loss: focal
metrics: [accuracy]
"""


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user module `my_blocks.py` next to the config; the test runs from another folder."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_blocks.py").write_text(CUSTOM_MODULE)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_blocks", raising=False)
    yield project
    sys.modules.pop("my_blocks", None)


def test_custom_objects_train_reload_and_export(custom_module: Path, tmp_path: Path):
    config = custom_module / "custom.yaml"
    config.write_text(CUSTOM)
    run = train(config, tmp_path / "out", "--trust-code")
    assert (run / "pythonpath.txt").read_text() == f"{custom_module}\n"
    sys.modules.pop("my_blocks", None)
    sys.path.remove(str(custom_module))  # the run folder alone must find the module again
    result = invoke("evaluate", run, "--json", "--trust-code")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["test"]["accuracy"])
    result = invoke("save", run, "--format", "keras", "--out", tmp_path / "m.keras", "--trust-code")
    assert result.exit_code == 0, result.output
    from my_blocks import Scale, focal

    model = keras.saving.load_model(tmp_path / "m.keras", custom_objects={"Scale": Scale, "focal": focal},
                                    safe_mode=True)
    assert isinstance(model.layers[1], Scale) and model.layers[1].factor == 0.5


def test_custom_object_errors(custom_module: Path):
    config = custom_module / "custom.yaml"
    config.write_text(CUSTOM.replace("loss: focal", "loss: Scale"))
    with pytest.raises(ConfigError) as info:
        check(load_config(config, trust_code=True))
    assert str(info.value).endswith(
        "loss: custom object 'Scale' is a layer, not a loss (a loss here must subclass keras.losses.Loss)")
    config.write_text(CUSTOM.replace("my_blocks:focal", "my_blocks:focall"))
    with pytest.raises(ConfigError) as info:
        check(load_config(config, trust_code=True))
    assert str(info.value).endswith("custom_objects[1]: 'my_blocks' has no 'focall' (did you mean 'focal'?)")


def test_lambda_needs_safe_mode_off_and_a_listed_function(custom_module: Path, tmp_path: Path):
    text = CUSTOM.replace("    - Scale: {factor: 0.5}", "    - Lambda: {function: double}") \
        .replace("my_blocks:Scale", "my_blocks:double")
    config = custom_module / "lambda.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match="Lambda runs arbitrary Python code, so configs refuse it"):
        check(load_config(config, trust_code=True))
    config.write_text(text + "safe_mode: false\n")
    run = train(config, tmp_path / "out", "--trust-code")
    # a Lambda's bytecode can only be reloaded with safe_mode off, which the run's config says
    assert invoke("evaluate", run, "--trust-code").exit_code == 0
    with pytest.raises(DltrainError, match="cannot load model"):
        from dltrain.model.saved import load_model

        load_model(run / "model.keras")  # without the config: safe_mode on, refused


def _residual_reference() -> keras.Model:
    """configs/fashion_mnist_resnet.yaml, written by hand with the functional API."""
    layers = keras.layers

    def conv(x, filters, strides=1, kernel_size=3):
        return layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False)(x)

    image = keras.Input((28, 28), name="image")
    x = layers.Reshape((28, 28, 1))(layers.Rescaling(1 / 255)(image))
    stem = layers.MaxPooling2D(2)(layers.ReLU()(layers.BatchNormalization()(conv(x, 32))))
    y = layers.BatchNormalization()(conv(layers.ReLU()(layers.BatchNormalization()(conv(stem, 32))), 32))
    block1 = layers.ReLU()(layers.Add()([stem, y]))
    y = layers.BatchNormalization()(conv(layers.ReLU()(layers.BatchNormalization()(conv(block1, 64, 2))), 64))
    shortcut = layers.BatchNormalization()(
        layers.Conv2D(64, 1, strides=2, use_bias=False)(block1))
    block2 = layers.ReLU()(layers.Add()([shortcut, y]))
    y = layers.BatchNormalization()(conv(layers.ReLU()(layers.BatchNormalization()(conv(block2, 64))), 64))
    x = layers.ReLU()(layers.Add()([block2, y]))
    x = layers.Dropout(0.2)(layers.GlobalAveragePooling2D()(x))
    return keras.Model(image, layers.Dense(10, activation="softmax")(x))


def test_residual_config_equals_the_functional_api():
    """The config is written with blocks; it builds exactly the network above, layer for layer and edge for edge."""
    model = check(load_config(CONFIGS / "fashion_mnist_resnet.yaml"))
    reference = _residual_reference()
    assert model.count_params() == reference.count_params() == 152_106
    assert_same_graph(model, reference)
    assert sum(isinstance(l, keras.layers.Add) for l in model.layers) == 3
    # the layers are named as the YAML reads: each block use's prefix, then the name inside the block
    assert model.get_layer("block2_shortcut_conv2d").input is model.get_layer("block1").output
    assert model.get_layer("block1_add").input[0] is model.get_layer("stem").output
    assert model.get_layer("block1_add").input[1] is model.get_layer("block1_main").output
    x = np.random.default_rng(0).integers(0, 255, (2, 28, 28)).astype("uint8")
    assert model.predict(x, verbose=0).shape == (2, 10)


@pytest.fixture(scope="module")
def schema() -> dict:
    return config_schema()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_match_the_json_schema(schema: dict, path: Path):
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_the_schema_catches_typos_and_knows_keras(schema: dict):
    config = yaml.safe_load((CONFIGS / "fashion_mnist.yaml").read_text())
    config["training"]["epoch"] = 3
    with pytest.raises(jsonschema.ValidationError, match="'epoch' was unexpected"):
        jsonschema.validate(config, schema)
    assert schema["$defs"]["ModelConfig"]["properties"]["layers"]["items"] == {"$ref": "#/$defs/Layer"}
    layers = schema["$defs"]["Layer"]["anyOf"]
    assert "Conv2D" in layers[0]["enum"]
    assert {"filters", "kernel_size", "inputs"} <= set(layers[2]["properties"]["Conv2D"]["properties"])
    jsonschema.validate({**yaml.safe_load((CONFIGS / "synthetic.yaml").read_text()),
                         "seed": "${training.epochs}"}, schema)  # a reference may stand for a number


def test_schema_command_writes_a_file(tmp_path: Path):
    result = invoke("schema", "--out", tmp_path / "dltrain.schema.json")
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "dltrain.schema.json").read_text())
    assert written["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "model" in written["required"]
