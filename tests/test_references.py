"""`${...}` references, per-output keys, custom_objects paths and `--explain`. No TensorFlow here."""

from __future__ import annotations

import pytest

from conftest import SYNTHETIC
from dltrain.load import load_config
from dltrain.errors import ConfigError
from dltrain.config.explain import origins

FASHION = """\
seed: 1
dataset: {name: fashion_mnist}
model:
  input_shape: ${dataset.input_shape}
  layers:
    - Flatten
    - Dense: {units: "${dataset.num_classes}", activation: softmax}
loss: sparse_categorical_crossentropy
"""


def error_of(path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value).replace(str(path), "F")


def test_dataset_facts_fill_references_and_keep_their_type(write_config):
    loaded = load_config(write_config(FASHION))
    assert loaded.config.model.input_shape == [28, 28]
    assert loaded.config.model.layers[1] == {"Dense": {"units": 10, "activation": "softmax"}}
    assert loaded.references == {("model", "input_shape"): "${dataset.input_shape}",
                                 ("model", "layers", 1, "Dense", "units"): "${dataset.num_classes}"}
    # the resolved config (a run's config.yaml) holds plain values, so it reproduces without the dataset
    assert "${" not in str(loaded.resolved())


def test_synthetic_facts_come_from_the_config(write_config):
    text = SYNTHETIC.replace("Dense: {units: 3,", 'Dense: {units: "${dataset.num_classes}",')
    assert load_config(write_config(text)).config.model.layers[2]["Dense"]["units"] == 3


def test_references_to_keys_defaults_and_inside_strings(write_config):
    text = SYNTHETIC.replace("name: tiny", "name: tiny-e${training.epochs}-b${training.shuffle_buffer}x") \
        .replace("  batch_size: 32", "  batch_size: 32\n  shuffle_buffer: ${training.batch_size}")
    config = load_config(write_config(text)).config
    assert config.training.shuffle_buffer == 32
    assert config.name == "tiny-e2-b32x"
    defaults = SYNTHETIC.replace("  epochs: 2\n", "").replace("seed: 7", "seed: ${training.epochs}")
    assert load_config(write_config(defaults)).config.seed == 1  # the schema's default epochs


def test_references_see_overrides_and_escapes_stay_literal(write_config):
    text = SYNTHETIC.replace("  train_size: 240", "  train_size: 240\n  data_dir: /data/$${HOME}") \
        .replace("  batch_size: 32", "  batch_size: ${training.epochs}")
    config = load_config(write_config(text), ["training.epochs=16"]).config
    assert config.training.batch_size == 16
    assert config.dataset.data_dir == "/data/${HOME}"

def test_reference_errors(write_config):
    path = write_config(FASHION.replace("${dataset.num_classes}", "${dataset.num_clases}"))
    assert error_of(path) == ("F:7:15: model.layers[1].Dense.units: unknown reference '${dataset.num_clases}' "
                              "(did you mean '${dataset.num_classes}'?)")
    path = write_config(FASHION.replace("seed: 1", "seed: ${model.layers}"))
    assert error_of(path).startswith("F:1:1: seed: expected an integer, got [")
    cycle = SYNTHETIC.replace("seed: 7", "seed: ${seed}")
    assert error_of(write_config(cycle)) == \
        "F:2:1: seed: references form a cycle: seed -> seed (one of these keys needs a plain value)"


def test_a_bad_dataset_section_is_reported_when_a_reference_needs_it(write_config):
    path = write_config(FASHION.replace("{name: fashion_mnist}", "{name: fashion_mnist, test_sise: 5}"))
    assert error_of(path) == "F:2:32: dataset.test_sise: unknown key 'test_sise' (did you mean 'test_size' or 'test_split' or 'test'?)"


MULTI = """\
seed: 1
dataset: {name: synthetic, input_shape: [8], num_classes: 3}
model:
  layers:
    - Dense: {name: hidden, units: 8}
    - Dense: {name: label, units: 3, activation: softmax}
    - Dense: {name: aux, inputs: hidden, units: 3, activation: softmax}
  outputs: [label, aux]
loss: {label: sparse_categorical_crossentropy, aux: {SparseCategoricalCrossentropy: {from_logits: false}}}
loss_weights: {label: 1.0, aux: 0.25}
metrics: {label: [accuracy]}
"""


def test_per_output_loss_metrics_and_weights(write_config):
    config = load_config(write_config(MULTI)).config
    assert config.loss == {"label": "sparse_categorical_crossentropy",
                           "aux": {"SparseCategoricalCrossentropy": {"from_logits": False}}}
    assert config.metrics == {"label": ["accuracy"]}
    assert config.loss_weights == {"label": 1.0, "aux": 0.25}
    one_loss = MULTI.replace("loss: {label: sparse_categorical_crossentropy, aux: {SparseCategoricalCrossentropy: "
                             "{from_logits: false}}}", "loss: {Huber: {delta: 1.0}}")
    assert load_config(write_config(one_loss)).config.loss == {"Huber": {"delta": 1.0}}
    bad_weight = MULTI.replace("aux: 0.25", "axu: 0.25")
    assert error_of(write_config(bad_weight)) == \
        "F:10:28: loss_weights.axu: no model output named 'axu' (did you mean 'aux'?)"


def test_custom_objects_are_import_paths(write_config):
    good = SYNTHETIC + "custom_objects: [my_pkg.layers:Block, helpers:my_loss]\n"
    assert load_config(write_config(good)).config.custom_objects == ["my_pkg.layers:Block", "helpers:my_loss"]
    bad = SYNTHETIC + "custom_objects: ['os:system()']\n"
    assert error_of(write_config(bad)) == (
        "F:22:18: custom_objects[0]: expected an import path like 'mypackage.layers:MyBlock', got 'os:system()' "
        "(a module path, a colon, then the name defined in that module)")


def test_explain_names_the_origin_of_every_value(write_config, tmp_path):
    write_config("seed: 5\ndataset: {name: fashion_mnist}\ntraining:\n  epochs: 3\n", "base.yaml")
    top = write_config("extends: base.yaml\nmodel:\n  layers:\n    - Flatten\n"
                       "    - Dense: {units: \"${dataset.num_classes}\"}\nloss: mse\n", "top.yaml")
    loaded = load_config(top, ["training.batch_size=8"])
    found = {o.key: (o.value, o.source.replace(str(tmp_path) + "/", "")) for o in origins(loaded)}
    assert found["seed"] == (5, "base.yaml:1:1")
    assert found["training.epochs"] == (3, "base.yaml:4:3")
    assert found["training.batch_size"] == (8, "--set")
    assert found["model.layers[0]"] == ("Flatten", "top.yaml:4:7")
    assert found["model.layers[1].Dense.units"] == (10, "${dataset.num_classes} at top.yaml:5:15")
    assert found["optimizer"] == ("adam", "default")
    assert found["dataset.validation_split"] == (0.1, "default")
    unseeded = load_config(write_config("dataset: {name: mnist}\nmodel: {layers: [Flatten]}\nloss: mse\n"))
    assert {o.key: o.source for o in origins(unseeded)}["seed"] == "drawn at random"
