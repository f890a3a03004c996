"""How layers are called (one list, positional tensors, keyword tensors, `call:` arguments, `name.N`), frozen
layers, and keras.applications backbones: weights from a file, from Keras's cache, or the offline error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import keras
import numpy as np
import pytest
from keras import layers
from typer.testing import CliRunner

from keras_graph import assert_same_graph
from dltrain.cli import app
from dltrain.errors import ModelBuildError
from dltrain.load import load_config
from dltrain.model.builder import build_model, check

ATTENTION = """\
name: calls
seed: 1
dataset: {name: synthetic, input_shape: [6, 8], num_classes: 3}
model:
  inputs: {query: [6, 8], context: [6, 8]}
  layers:
    - Dense: {name: keys, units: 8, inputs: context}
    - Attention: {name: dot, inputs: [query, context]}                 # call(inputs): one list
    - MultiHeadAttention:                                              # call(query, value, key, ...): positional
        name: mha
        num_heads: 2
        key_dim: 4
        inputs: [query, context, keys]
        call: {return_attention_scores: true}
    - MultiHeadAttention:
        name: self_attention
        num_heads: 2
        key_dim: 4
        inputs: {query: mha.0, value: mha.0}                           # by name; mha.0: its first output
        call: {use_causal_mask: true}
    - Flatten: {name: scores, inputs: mha.1}                           # the attention scores
    - GlobalAveragePooling1D: {name: pooled, inputs: self_attention}
    - GlobalAveragePooling1D: {name: pooled_dot, inputs: dot}
    - Concatenate: {inputs: [pooled, pooled_dot, scores]}              # call(inputs): one list
    - Dense: {units: 3, activation: softmax, trainable: false}         # any layer can be frozen
loss: sparse_categorical_crossentropy
"""


def attention_reference() -> keras.Model:
    query, context = keras.Input((6, 8), name="query"), keras.Input((6, 8), name="context")
    keys = layers.Dense(8)(context)
    dot = layers.Attention()([query, context])
    attended, scores = layers.MultiHeadAttention(num_heads=2, key_dim=4)(
        query, context, keys, return_attention_scores=True)
    self_attention = layers.MultiHeadAttention(num_heads=2, key_dim=4)(attended, attended, use_causal_mask=True)
    scores = layers.Flatten()(scores)
    pooled = layers.GlobalAveragePooling1D()(self_attention)
    pooled_dot = layers.GlobalAveragePooling1D()(dot)
    joined = layers.Concatenate()([pooled, pooled_dot, scores])
    return keras.Model([query, context], layers.Dense(3, activation="softmax", trainable=False)(joined))


def test_each_layer_is_called_as_its_call_signature_takes_it(write_config):
    keras.backend.clear_session()
    ours = build_model(load_config(write_config(ATTENTION)))
    keras.backend.clear_session()
    assert_same_graph(ours, attention_reference())
    # heads x query x value positions (Keras 3.15 gets the symbolic shape wrong when their lengths differ)
    assert ours.get_layer("scores").output.shape == (None, 2 * 6 * 6)
    frozen = ours.layers[-1]
    assert not frozen.trainable and frozen.count_params() == 3 * (8 + 8 + 72) + 3


def test_check_shows_trainable_and_frozen_parameters(write_config):
    result = CliRunner().invoke(app, ["check", str(write_config(ATTENTION))])
    assert result.exit_code == 0, result.output
    total = 8 * 8 + 8 + 2 * (3 * (8 * 2 * 4 + 2 * 4) + 2 * 4 * 8 + 8) + 3 * 88 + 3
    assert f"{total:,} parameters ({total - 267:,} trainable, 267 frozen); config OK" in result.stdout
    assert re.search(r"│ dense\s+│ Dense\s+│ \(None, 3\)\s+│ 267\s+│ 0\s+│", result.stdout)


BACKBONE = """\
name: backbone
seed: 1
dataset: {name: synthetic, input_shape: [32, 32, 3], num_classes: 3}
model:
  layers:
    - Rescaling: {scale: 0.00784313725490196, offset: -1}
    - MobileNetV2: {include_top: false, alpha: 0.35, weights: WEIGHTS, trainable: false, call: {training: false}}
    - GlobalAveragePooling2D
    - Dense: {units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
"""


def test_a_backbone_loads_its_weights_from_a_file(write_config, tmp_path: Path):
    keras.backend.clear_session()
    saved = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, alpha=0.35, weights=None)
    saved.save_weights(tmp_path / "mine.weights.h5")
    expected = [w.numpy() for w in saved.weights]
    keras.backend.clear_session()
    model = check(load_config(write_config(BACKBONE.replace("WEIGHTS", str(tmp_path / "mine.weights.h5")))))
    loaded = [w.numpy() for w in model.layers[2].weights]
    assert len(loaded) == len(expected) and all(np.array_equal(a, b) for a, b in zip(loaded, expected))
    assert model.layers[2].trainable is False


def test_imagenet_weights_offline_name_the_file_and_the_folder(write_config, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    from keras.src.backend import config as keras_config

    (tmp_path / "keras").mkdir()
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(tmp_path / "keras"))  # an empty Keras cache
    path = write_config(BACKBONE.replace("WEIGHTS", "imagenet"))
    with pytest.raises(ModelBuildError) as info, pytest.warns(UserWarning, match="input_shape"):
        check(load_config(path))
    # 32x32 is not one of the sizes Keras has weights for: it loads the 224x224 ones (and warns)
    file = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
    assert str(info.value) == (
        f"{path}:7:54: model.layers[1].MobileNetV2.weights: MobileNetV2's imagenet weights are not in Keras's cache "
        f"and downloads are off (DLTRAIN_OFFLINE=1) (place {file} in {tmp_path}/keras/models/; Keras downloads it "
        f"from https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/{file}; weights: null "
        "builds the backbone with random weights)")


def test_the_schema_knows_blocks_calls_outputs_and_backbones():
    from dltrain.model.schema import config_schema

    schema = config_schema()
    block = schema["$defs"]["BlockConfig"]
    assert set(block["properties"]) == {"params", "layers"}
    assert block["properties"]["layers"]["items"] == {"$ref": "#/$defs/Layer"}
    assert schema["properties"]["blocks"]["additionalProperties"] == {"$ref": "#/$defs/BlockConfig"}
    layer = schema["$defs"]["Layer"]
    assert "MobileNetV2" in layer["anyOf"][0]["enum"]
    classes = layer["anyOf"][2]["properties"]
    assert {"include_top", "weights", "alpha", "trainable", "call", "inputs"} <= set(classes["MobileNetV2"]["properties"])
    assert "input_tensor" not in classes["MobileNetV2"]["properties"]
    attention = classes["MultiHeadAttention"]["properties"]
    assert {"use_causal_mask", "return_attention_scores", "training"} <= set(attention["call"]["properties"])
    assert {"query", "value", "key"} <= set(attention["inputs"]["anyOf"][2]["properties"])
    assert "name.N" in json.dumps(attention["inputs"]["anyOf"][0])
