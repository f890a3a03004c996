"""Well-known keras.io models written as configs, each compared with the same model written with the
functional API: layer types, parameter counts, output shapes and every edge (tests/keras_graph.py)."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest
from keras import layers

from conftest import CONFIGS
from keras_graph import assert_same_graph
from dltrain.load import load_config
from dltrain.model.builder import build_model

HEAD = """\
name: example
seed: 1
dataset: {{name: synthetic, input_shape: {shape}, num_classes: 2}}
loss: sparse_categorical_crossentropy
"""


def from_yaml(text: str, shape: list, write_config) -> keras.Model:
    keras.backend.clear_session()
    path = write_config(HEAD.format(shape=shape) + text)
    return build_model(load_config(path), tuple(shape))


def from_config(name: str, shape: tuple, *overrides: str) -> keras.Model:
    keras.backend.clear_session()
    return build_model(load_config(CONFIGS / name, list(overrides)), shape)


# keras.io/examples/vision/mnist_convnet
CONVNET = """\
model:
  layers:
    - Conv2D: {filters: 32, kernel_size: 3, activation: relu}
    - MaxPooling2D: {pool_size: 2}
    - Conv2D: {filters: 64, kernel_size: 3, activation: relu}
    - MaxPooling2D: {pool_size: 2}
    - Flatten
    - Dropout: {rate: 0.5}
    - Dense: {units: 10, activation: softmax}
"""


def convnet() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    x = layers.MaxPooling2D(2)(layers.Conv2D(32, 3, activation="relu")(inputs))
    x = layers.MaxPooling2D(2)(layers.Conv2D(64, 3, activation="relu")(x))
    x = layers.Dropout(0.5)(layers.Flatten()(x))
    return keras.Model(inputs, layers.Dense(10, activation="softmax")(x))


# keras.io/examples/nlp/text_classification_from_scratch
TEXT_CNN = """\
model:
  layers:
    - Embedding: {input_dim: 20000, output_dim: 128}
    - Dropout: {rate: 0.5}
    - Conv1D: {filters: 128, kernel_size: 7, padding: valid, activation: relu, strides: 3}
    - Conv1D: {filters: 128, kernel_size: 7, padding: valid, activation: relu, strides: 3}
    - GlobalMaxPooling1D
    - Dense: {units: 128, activation: relu}
    - Dropout: {rate: 0.5}
    - Dense: {name: predictions, units: 1, activation: sigmoid}
"""


def text_cnn() -> keras.Model:
    inputs = keras.Input((500,))
    x = layers.Dropout(0.5)(layers.Embedding(20000, 128)(inputs))
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Conv1D(128, 7, padding="valid", activation="relu", strides=3)(x)
    x = layers.Dense(128, activation="relu")(layers.GlobalMaxPooling1D()(x))
    x = layers.Dropout(0.5)(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid", name="predictions")(x))


# keras.io/examples/nlp/bidirectional_lstm_imdb
BILSTM = """\
model:
  layers:
    - Embedding: {input_dim: 20000, output_dim: 128}
    - Bidirectional: {layer: {LSTM: {units: 64, return_sequences: true}}}
    - Bidirectional: {layer: {LSTM: {units: 64}}}
    - Dense: {units: 1, activation: sigmoid}
"""


def bilstm() -> keras.Model:
    inputs = keras.Input((200,))
    x = layers.Embedding(20000, 128)(inputs)
    x = layers.Bidirectional(layers.LSTM(64, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(64))(x)
    return keras.Model(inputs, layers.Dense(1, activation="sigmoid")(x))


# keras.io/examples/timeseries/timeseries_classification_from_scratch: three conv blocks, one block repeated
FCN = """\
blocks:
  conv_block:
    layers:
      - Conv1D: {filters: 64, kernel_size: 3, padding: same}
      - BatchNormalization
      - ReLU
model:
  layers:
    - conv_block: {repeat: 3}
    - GlobalAveragePooling1D
    - Dense: {units: 2, activation: softmax}
"""


def fcn() -> keras.Model:
    inputs = keras.Input((500, 1))
    x = inputs
    for _ in range(3):
        x = layers.ReLU()(layers.BatchNormalization()(layers.Conv1D(64, 3, padding="same")(x)))
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.GlobalAveragePooling1D()(x)))


# keras.io/examples/vision/image_classification_from_scratch (its make_model: Xception-style residuals)
XCEPTION = """\
blocks:
  xception:
    params: {size: 256}
    layers:
      - Activation: {activation: relu}
      - SeparableConv2D: {filters: $size, kernel_size: 3, padding: same}
      - BatchNormalization
      - Activation: {activation: relu}
      - SeparableConv2D: {filters: $size, kernel_size: 3, padding: same}
      - BatchNormalization
      - MaxPooling2D: {name: pooled, pool_size: 3, strides: 2, padding: same}
      - Conv2D: {name: residual, inputs: $input, filters: $size, kernel_size: 1, strides: 2, padding: same}
      - Add: {inputs: [pooled, residual]}
model:
  layers:
    - Rescaling: {scale: 0.00392156862745098}
    - Conv2D: {filters: 128, kernel_size: 3, strides: 2, padding: same}
    - BatchNormalization
    - Activation: {activation: relu}
    - xception: {size: 256}
    - xception: {size: 512}
    - xception: {size: 728}
    - SeparableConv2D: {filters: 1024, kernel_size: 3, padding: same}
    - BatchNormalization
    - Activation: {activation: relu}
    - GlobalAveragePooling2D
    - Dropout: {rate: 0.25}
    - Dense: {units: 1}
"""


def xception() -> keras.Model:
    inputs = keras.Input((180, 180, 3))
    x = layers.Rescaling(1.0 / 255)(inputs)
    x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(128, 3, strides=2, padding="same")(x)))
    previous = x
    for size in (256, 512, 728):
        x = layers.Activation("relu")(x)
        x = layers.BatchNormalization()(layers.SeparableConv2D(size, 3, padding="same")(x))
        x = layers.Activation("relu")(x)
        x = layers.BatchNormalization()(layers.SeparableConv2D(size, 3, padding="same")(x))
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        residual = layers.Conv2D(size, 1, strides=2, padding="same")(previous)
        x = previous = layers.Add()([x, residual])
    x = layers.BatchNormalization()(layers.SeparableConv2D(1024, 3, padding="same")(x))
    x = layers.GlobalAveragePooling2D()(layers.Activation("relu")(x))
    return keras.Model(inputs, layers.Dense(1)(layers.Dropout(0.25)(x)))


def transformer() -> keras.Model:
    """configs/imdb_transformer.yaml: keras.io's Transformer block on token embeddings."""
    inputs = keras.Input((200,))
    x = layers.Embedding(20000, 32)(inputs)
    attention = layers.Dropout(0.1)(layers.MultiHeadAttention(num_heads=2, key_dim=32)(x, x))
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, attention]))
    ff = layers.Dense(32)(layers.Dense(32, activation="relu")(x))
    x = layers.LayerNormalization(epsilon=1e-6)(layers.Add()([x, layers.Dropout(0.1)(ff)]))
    x = layers.Dropout(0.1)(layers.GlobalAveragePooling1D()(x))
    x = layers.Dropout(0.1)(layers.Dense(20, activation="relu")(x))
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))


def seq2seq() -> keras.Model:
    """configs/seq2seq.yaml: keras.io's character-level encoder-decoder (71 input, 93 target characters)."""
    encoder_inputs = keras.Input((None, 71), name="encoder")
    _, state_h, state_c = layers.LSTM(256, return_state=True)(encoder_inputs)
    decoder_inputs = keras.Input((None, 93), name="decoder")
    decoded, _, _ = layers.LSTM(256, return_sequences=True, return_state=True)(
        decoder_inputs, initial_state=[state_h, state_c])
    return keras.Model([encoder_inputs, decoder_inputs], layers.Dense(93, activation="softmax")(decoded))


def mobilenet() -> keras.Model:
    """configs/transfer_mobilenet.yaml: keras.io's transfer learning recipe on a frozen MobileNetV2."""
    inputs = keras.Input((96, 96, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    base = keras.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=False, weights=None)
    base.trainable = False
    x = layers.GlobalAveragePooling2D()(base(x, training=False))
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(layers.Dropout(0.2)(x)))


@pytest.fixture
def two_classes(tmp_path: Path) -> Path:
    """A stand-in image folder, so ${dataset.num_classes} has an answer (2)."""
    for name in ("cat", "dog"):
        (tmp_path / "images" / name).mkdir(parents=True)
        (tmp_path / "images" / name / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return tmp_path / "images"


WRITTEN = [("convnet", CONVNET, [28, 28, 1], convnet, 34_826), ("text_cnn", TEXT_CNN, [500], text_cnn, 2_806_273),
           ("bilstm", BILSTM, [200], bilstm, 2_757_761), ("fcn", FCN, [500, 1], fcn, 25_858),
           ("xception", XCEPTION, [180, 180, 3], xception, 2_731_065)]


@pytest.mark.parametrize("name, text, shape, python, params", WRITTEN, ids=[w[0] for w in WRITTEN])
def test_keras_io_examples_build_from_yaml(name, text, shape, python, params, write_config):
    ours = from_yaml(text, shape, write_config)
    keras.backend.clear_session()
    assert_same_graph(ours, python())
    assert ours.count_params() == params


def test_the_unnamed_layer_a_block_takes_has_the_name_keras_gives_it(write_config):
    text = """\
blocks:
  residual:
    layers:
      - Dense: {name: proj, units: 8}
      - Add: {inputs: [$input, proj]}
model:
  layers:
    - Embedding: {input_dim: 20, output_dim: 8}
    - residual: {repeat: 2}
    - GlobalAveragePooling1D
    - Dense: {units: 2, activation: softmax}
"""
    names = [layer.name for layer in from_yaml(text, [6], write_config).layers]
    assert names == ["input", "embedding", "residual_1_proj", "residual_1_add", "residual_2_proj", "residual_2_add",
                     "global_average_pooling1d", "dense"]


def test_the_transformer_config_is_the_functional_transformer():
    ours = from_config("imdb_transformer.yaml", (200,))
    assert [l.name for l in ours.layers][2:6] == ["transformer_1_attention", "transformer_1_attention_dropout",
                                                  "transformer_1_attention_residual", "transformer_1_attention_norm"]
    keras.backend.clear_session()
    assert_same_graph(ours, transformer())
    assert ours.count_params() == 651_358


def test_the_seq2seq_config_is_the_functional_encoder_decoder():
    ours = from_config("seq2seq.yaml", (None,))
    keras.backend.clear_session()
    assert_same_graph(ours, seq2seq())
    assert ours.count_params() == 718_173
    dec = ours.get_layer("dec")
    # the decoder starts from the encoder's outputs 1 and 2 (its states h and c), given by keyword
    node = dec._inbound_nodes[0]
    assert [t._keras_history.tensor_index for t in node.arguments.kwargs["initial_state"]] == [1, 2]
    assert node.arguments.kwargs["initial_state"][0]._keras_history.operation is ours.get_layer("enc")


def test_the_transfer_config_is_a_frozen_mobilenet(two_classes: Path):
    ours = from_config("transfer_mobilenet.yaml", (96, 96, 3), f"dataset.path={two_classes}",
                       "model.layers[1].MobileNetV2.weights=null")
    keras.backend.clear_session()
    assert_same_graph(ours, mobilenet())
    assert ours.count_params() == 2_260_546
    backbone = ours.layers[2]
    assert backbone.name == "mobilenetv2_1.00_96" and not backbone.trainable
    assert sum(int(w.numpy().size) for w in ours.trainable_weights) == 2_562  # the head only
    node = backbone._inbound_nodes[-1]
    assert node.arguments.kwargs["training"] is False
