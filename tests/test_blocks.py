"""Blocks: defined once under `blocks:`, used like a layer, expanded into plain layers before validation.
These tests never import TensorFlow (the expansion is config work); test_models.py builds the models."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from typer.testing import CliRunner

from conftest import CONFIGS
from dltrain.cli import app
from dltrain.config import split_spec
from dltrain.errors import ConfigError
from dltrain.load import load_config

BLOCKS = """\
name: blocks
seed: 3
dataset: {name: synthetic, input_shape: [8, 8, 2], num_classes: 3}
blocks:
  conv_bn:
    params: {filters: 16, strides: 1}
    layers:
      - Conv2D: {filters: $filters, kernel_size: 3, strides: $strides, padding: same, use_bias: false}
      - BatchNormalization
  identity:
    params: {filters: 16}
    layers:
      - conv_bn: {filters: $filters}
      - Conv2D: {filters: $filters, kernel_size: 3, padding: same, use_bias: false, name: conv_$filters}
      - BatchNormalization: {name: main}
      - Add: {inputs: [main, $input]}
      - ReLU
model:
  layers:
    - Conv2D: {filters: 16, kernel_size: 1}
    - identity: {filters: 16, repeat: 2}
    - identity: {name: last, filters: 16}
    - GlobalAveragePooling2D
    - Dense: {units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
"""


def layers(text_or_path, write_config=None, *overrides: str) -> list[tuple[str, dict]]:
    path = write_config(text_or_path) if write_config else text_or_path
    return [split_spec(spec) for spec in load_config(path, list(overrides)).config.model.layers]


def test_uses_expand_into_plain_layers_named_after_each_use(write_config):
    found = layers(BLOCKS, write_config)
    names = [kwargs.get("name") for _, kwargs in found]
    assert names == [
        "conv2d",  # the unnamed layer a block's $input takes gets the name Keras would give it
        "identity_1_conv_bn_1_conv2d", "identity_1_conv_bn_1_batch_normalization", "identity_1_conv_16",
        "identity_1_main", "identity_1_add", "identity_1_re_lu",
        "identity_2_conv_bn_1_conv2d", "identity_2_conv_bn_1_batch_normalization", "identity_2_conv_16",
        "identity_2_main", "identity_2_add", "identity_2_re_lu",
        "last_conv_bn_1_conv2d", "last_conv_bn_1_batch_normalization", "last_conv_16", "last_main", "last_add",
        "last",  # a named use: its output is the block's last layer, called by the use's name
        None, None]
    assert [cls for cls, _ in found][:7] == ["Conv2D", "Conv2D", "BatchNormalization", "Conv2D",
                                             "BatchNormalization", "Add", "ReLU"]
    # $input is what each use was given: the layer before, or the previous repetition's output
    assert found[5][1]["inputs"] == ["identity_1_main", "conv2d"]
    assert found[11][1]["inputs"] == ["identity_2_main", "identity_1_re_lu"]
    assert found[17][1]["inputs"] == ["last_main", "identity_2_re_lu"]
    # $param keeps its type; inside a longer string it is text
    assert found[1][1]["filters"] == 16 and found[1][1]["strides"] == 1 and found[3][1]["name"] == "identity_1_conv_16"


def test_the_layer_a_block_takes_keeps_its_keras_name_unless_keras_could_give_that_name_to_another(write_config):
    conv = "    - Conv2D: {filters: 16, kernel_size: 1}\n"
    # Two unnamed Conv2D: Keras names the first `conv2d`, so the one the block takes is named after the use.
    two = [k.get("name") for _, k in layers(BLOCKS.replace(conv, conv + conv), write_config)]
    assert two[:3] == [None, "identity_1_input", "identity_1_conv_bn_1_conv2d"]
    # A layer of the model already called `conv2d`.
    taken = BLOCKS.replace("- Dense: {units: 3,", "- Dense: {name: conv2d, units: 3,")
    assert [k.get("name") for _, k in layers(taken, write_config)][0] == "identity_1_input"
    # A named use's output layer is called by the use's name: `last: conv2d` takes the name too.
    used = BLOCKS.replace("identity: {name: last,", "identity: {name: conv2d,")
    assert [k.get("name") for _, k in layers(used, write_config)][0] == "identity_1_input"


def test_a_use_with_inputs_feeds_its_first_layer_and_dollars_stay_literal(write_config):
    text = BLOCKS.replace("    - identity: {name: last, filters: 16}\n",
                          "    - identity: {name: last, filters: 16, inputs: identity_1_r$1}\n"
                          "    - Concatenate: {inputs: [last, identity_2_r$1]}\n") \
        .replace("- ReLU\nmodel", "- ReLU: {name: r$$1}\nmodel")
    found = layers(text, write_config)
    first_of_last = next(kwargs for _, kwargs in found if kwargs.get("name") == "last_conv_bn_1_conv2d")
    assert first_of_last["inputs"] == "identity_1_r$1"  # outside blocks a `$` is just a `$`
    assert [k.get("name") for _, k in found].count("identity_1_r$1") == 1  # `$$` is a `$`
    concatenate = next(kwargs for cls, kwargs in found if cls == "Concatenate")
    assert concatenate["inputs"] == ["last", "identity_2_r$1"]


def test_set_reaches_into_a_use_and_explain_says_where_each_value_came_from(write_config):
    path = write_config(BLOCKS)
    assert layers(path, None, "model.layers[2].identity.filters=32")[13][1]["filters"] == 32
    result = CliRunner().invoke(app, ["config", str(path), "--explain", "--set", "model.layers[1].identity.filters=8"])
    assert result.exit_code == 0, result.output
    lines = {line.split(": ", 1)[0]: line.split("  # ")[1] for line in result.stdout.splitlines()}
    assert lines["model.layers[1].Conv2D.filters"] == "$filters from model.layers[1].identity.filters: --set"
    assert lines["model.layers[1].Conv2D.strides"] == \
        f"$strides from blocks.conv_bn.params.strides (the block default): {path}:6:27"
    assert lines["model.layers[15].Conv2D.filters"] == f"$filters from model.layers[2].identity.filters: {path}:22:30"
    assert lines["model.layers[13].Conv2D.filters"] == lines["model.layers[15].Conv2D.filters"]  # through conv_bn
    assert lines["model.layers[1].Conv2D.kernel_size"] == \
        f"{path}:8:37 (in block 'conv_bn' used at {path}:13:9, in block 'identity' used at {path}:21:7)"
    assert lines["model.layers[5].Add.inputs[1]"] == "$input of identity_1"
    assert lines["model.layers[19]"] == f"{path}:23:7"  # a layer after the uses: its own line


def test_resolved_config_holds_the_expanded_layers_and_reproduces(write_config, tmp_path):
    loaded = load_config(write_config(BLOCKS))
    resolved = loaded.resolved()
    assert "blocks" not in resolved
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(resolved, sort_keys=False))
    assert load_config(again).config.model.layers == loaded.config.model.layers


def test_errors_after_expansion_name_the_written_layer(write_config):
    text = BLOCKS.replace("    - GlobalAveragePooling2D\n", "    - GlobalAveragePooling2D: {name: last}\n")
    path = write_config(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    # model.layers[3] as written, not the expanded list's index
    assert str(info.value) == (f"{path}:23:32: model.layers[3].GlobalAveragePooling2D.name: the name 'last' is "
                               "used twice (layer names must be unique)")


def test_blocks_expand_without_tensorflow():
    code = ("import sys; from dltrain.load import load_config; "
            f"loaded = load_config({str(CONFIGS / 'fashion_mnist_resnet.yaml')!r}); "
            "print(len(loaded.config.model.layers), 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["32", "False"]


def test_references_work_inside_blocks_and_explain_names_them(write_config):
    text = BLOCKS.replace("  identity:\n", "  head:\n    params: {units: \"${dataset.num_classes}\"}\n    layers:\n"
                          "      - Dense: {units: $units, activation: softmax}\n  identity:\n") \
        .replace("    - Dense: {units: 3, activation: softmax}\n", "    - head\n")
    path = write_config(text)
    loaded = load_config(path)
    assert split_spec(loaded.config.model.layers[-1]) == ("Dense", {"name": "head_1_dense", "units": 3,
                                                                    "activation": "softmax"})
    result = CliRunner().invoke(app, ["config", str(path), "--explain"])
    line = next(l for l in result.stdout.splitlines() if l.startswith("model.layers[20].Dense.units"))
    assert line.endswith(f"# $units from blocks.head.params.units (the block default): "
                         f"${{dataset.num_classes}} at {path}:11:14")
