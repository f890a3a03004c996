"""Model building: shipped configs, Keras name lookups, argument checks, graphs."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import CONFIGS, SYNTHETIC
from dltrain.model import registry
from dltrain.load import load_config
from dltrain.errors import ConfigError, DltrainError, ModelBuildError
from dltrain.model.builder import check, layer_rows


def message(path: Path) -> str:
    with pytest.raises(DltrainError) as info:
        check(load_config(path))
    return str(info.value).replace(str(path), "F")


@pytest.mark.parametrize("path, params", [
    ("mnist.yaml", 101_770), ("fashion_mnist.yaml", 101_770), ("synthetic.yaml", 676),
    ("fashion_mnist_cnn.yaml", 421_930),
])
def test_shipped_configs_build(path: str, params: int):
    model = check(load_config(CONFIGS / path))
    assert model.count_params() == params
    assert model.output.shape[-1] in (4, 10)


def test_layer_rows_lists_every_layer():
    model = check(load_config(CONFIGS / "mnist.yaml"))
    assert [r[1] for r in layer_rows(model)] == ["InputLayer", "Rescaling", "Flatten", "Dense", "Dropout", "Dense"]
    assert layer_rows(model)[3][2:] == ("(None, 128)", 100_480, 100_480)


def test_catalog_lists_real_keras_names():
    assert registry.catalog("layer")["Conv2D"] is keras.layers.Conv2D
    assert registry.catalog("optimizer")["adam"] is keras.optimizers.Adam
    assert "Conv2D" in registry.list_names("layer", "Conv*")
    assert "Layer" not in registry.catalog("layer")


def test_nested_objects_are_built(write_config):
    text = SYNTHETIC.replace(
        "Adam: {learning_rate: 0.01}",
        "Adam: {learning_rate: {CosineDecay: {initial_learning_rate: 0.01, decay_steps: 100}}}",
    ).replace("{units: 16, activation: relu}", "{units: 16, activation: relu, kernel_regularizer: {L2: {l2: 0.01}}}")
    model = check(load_config(write_config(text)))
    assert isinstance(model.optimizer.learning_rate, float) or model.optimizer._learning_rate is not None
    assert isinstance(model.optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)
    assert isinstance(model.layers[1].kernel_regularizer, keras.regularizers.L2)


BROKEN = [
    (("Dense: {units: 16, activation: relu}", "Dnese: {units: 16}"),
     "F:12:7: model.layers[0].Dnese: unknown layer 'Dnese' (did you mean 'Dense'?)"),
    (("Dense: {units: 16, activation: relu}", "Dense: {unit: 16}"),
     "F:12:15: model.layers[0].Dense.unit: unknown argument 'unit' of Dense (did you mean 'units'?)"),
    (("Dense: {units: 16, activation: relu}", "Dense: {activation: relu}"),
     "F:12:7: model.layers[0].Dense: Dense needs the argument 'units' (write {Dense: {units: ...}})"),
    (("activation: relu", "activation: rleu"),
     "F:12:26: model.layers[0].Dense.activation: unknown activation 'rleu' (did you mean 'relu' or 'relu6'?)"),
    (("Dropout: {rate: 0.1}", "Dropout: {rate: high}"),
     "F:13:7: model.layers[1].Dropout: Keras rejected the arguments of Dropout: "
     "'<=' not supported between instances of 'int' and 'str' "
     "(check each value's type and range against help(keras.layers.Dropout))"),
    (("Dropout: {rate: 0.1}", "Conv2D: {filters: 4, kernel_size: 3}"),
     "F:13:7: model.layers[1].Conv2D: Conv2D cannot take input of shape (None, 16): Input 0 with name 'None' of "
     "layer 'conv2d' is incompatible with the layer: expected min_ndim=4, found ndim=2. Full shape received: "
     "(None, 16) (check this layer's arguments and the layers before it)"),
    (("Adam: {learning_rate: 0.01}", "Adamm: {learning_rate: 0.01}"),
     "F:17:3: optimizer.Adamm: unknown optimizer 'Adamm' (did you mean 'Adam' or 'AdamW' or 'Adamax'?)"),
    (("Adam: {learning_rate: 0.01}", "Adam: {lr: 0.01}"),
     "F:17:10: optimizer.Adam.lr: unknown argument 'lr' of Adam (did you mean 'learning_rate'?)"),
    (("loss: sparse_categorical_crossentropy", "loss: sparse_categorical_crossentropi"),
     "F:15:1: loss: unknown loss 'sparse_categorical_crossentropi' (did you mean 'sparse_categorical_crossentropy'"
     " or 'categorical_crossentropy' or 'SparseCategoricalCrossentropy'?)"),
    (("loss: sparse_categorical_crossentropy", "loss: {sparse_categorical_crossentropy: {from_logits: true}}"),
     "F:15:8: loss.sparse_categorical_crossentropy: 'sparse_categorical_crossentropy' is a function and takes no "
     "arguments (use the class 'SparseCategoricalCrossentropy' to pass arguments)"),
    (("metrics: [accuracy]", "metrics: [acuracy]"),
     "F:18:11: metrics[0]: unknown metric 'acuracy' (did you mean 'accuracy' or 'Accuracy' or 'BinaryAccuracy'?)"),
    (("  batch_size: 32", "  batch_size: 32\n  callbacks:\n    - EarlyStopping: {monitr: val_loss}"),
     "F:23:23: training.callbacks[0].EarlyStopping.monitr: unknown argument 'monitr' of EarlyStopping "
     "(did you mean 'monitor'?)"),
]


@pytest.mark.parametrize("change, expected", BROKEN, ids=[b[1][:60] for b in BROKEN])
def test_broken_models_give_exact_messages(write_config, change, expected):
    text = SYNTHETIC.replace(*change)
    assert text != SYNTHETIC
    assert message(write_config(text)) == expected


def test_shape_errors_are_model_build_errors(write_config):
    path = write_config(SYNTHETIC.replace("Dropout: {rate: 0.1}", "Reshape: {target_shape: [5, 5]}"))
    with pytest.raises(ModelBuildError):
        check(load_config(path))


def test_unknown_names_are_config_errors(write_config):
    with pytest.raises(ConfigError):
        check(load_config(write_config(SYNTHETIC.replace("Dropout:", "Dropot:"))))


GRAPH = """\
seed: 3
dataset: {name: synthetic, input_shape: [12, 12, 1], num_classes: 4}
model:
  layers:
    - Conv2D: {name: c1, filters: 8, kernel_size: 3, padding: same, activation: relu}
    - Conv2D: {name: c2, filters: 8, kernel_size: 3, padding: same}
    - Add: {name: skip, inputs: [c1, c2]}
    - GlobalAveragePooling2D
    - Dense: {name: label, units: 4, activation: softmax}
loss: sparse_categorical_crossentropy
"""


def test_graph_from_yaml_equals_the_functional_api(write_config):
    model = check(load_config(write_config(GRAPH)))
    x = keras.Input((12, 12, 1))
    c1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    c2 = keras.layers.Conv2D(8, 3, padding="same")(c1)
    y = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([c1, c2])))
    reference = keras.Model(x, y)
    assert [type(l).__name__ for l in model.layers] == [type(l).__name__ for l in reference.layers]
    assert [l.count_params() for l in model.layers] == [l.count_params() for l in reference.layers]
    assert [tuple(l.output.shape) for l in model.layers] == [tuple(l.output.shape) for l in reference.layers]
    assert model.get_layer("skip").input[0] is model.get_layer("c1").output
    assert model.predict(np.zeros((2, 12, 12, 1)), verbose=0).shape == (2, 4)
