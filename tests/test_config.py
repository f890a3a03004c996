"""Config loading, overrides, composition and error messages. These tests never import TensorFlow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CONFIGS, SYNTHETIC
from dltrain.config import parse_key_path
from dltrain.load import load_config
from dltrain.errors import ConfigError


def error_of(path: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    return str(info.value).replace(str(path), "F")


def test_loading_a_config_never_imports_tensorflow():
    code = (
        "import sys; from dltrain.load import load_config; "
        f"load_config({str(CONFIGS / 'mnist.yaml')!r}); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_validates(path: Path, tmp_path: Path):
    overrides = []
    if path.name in ("images_folder.yaml", "transfer_mobilenet.yaml"):  # the user's own folder: a stand-in
        for name in ("cat", "dog"):
            (tmp_path / name).mkdir()
            (tmp_path / name / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # the format is read off the files
        overrides = [f"dataset.path={tmp_path}"]
    if path.name == "npz_arrays.yaml":  # for the user's own arrays: validated on a stand-in file
        import numpy as np

        np.savez(tmp_path / "a.npz", x_train=np.zeros((4, 3)), y_train=np.arange(4), x_test=np.zeros((2, 3)),
                 y_test=np.arange(2))
        overrides = [f"dataset.path={tmp_path / 'a.npz'}"]
    if path.name == "multilabel_text.yaml":  # ${dataset.num_classes} is the tags of a stand-in table
        (tmp_path / "papers.csv").write_text("summaries,terms\nnets,cs.LG\nimages,cs.CV|cs.LG\n")
        overrides = [f"dataset.path={tmp_path / 'papers.csv'}"]
    if path.name == "unet_segmentation.yaml":  # images and masks: a real pair (the masks tell the classes)
        from PIL import Image

        for folder, value in (("images", 200), ("masks", 1)):
            (tmp_path / folder).mkdir()
            Image.new("L", (4, 4), value).save(tmp_path / folder / "1.png")
        overrides = [f"dataset.path={tmp_path / 'images'}", f"dataset.masks={tmp_path / 'masks'}"]
    if path.name == "audio_conv1d.yaml":  # class folders of .wav files at the config's rate (its header is read)
        import wave

        for name in ("no", "yes"):
            (tmp_path / name).mkdir()
            with wave.open(str(tmp_path / name / "1.wav"), "wb") as handle:
                handle.setnchannels(1)
                handle.setsampwidth(2)
                handle.setframerate(16000)
                handle.writeframes(bytes(32))
        overrides = [f"dataset.path={tmp_path}"]
    if path.name in ("bert_imdb.yaml", "vit_images.yaml"):  # KerasHub tasks on the user's own folders
        for name in ("neg", "pos"):
            (tmp_path / name).mkdir()
            (tmp_path / name / ("1.png" if path.name == "vit_images.yaml" else "1.txt")).write_bytes(b"\x89PNG\r\n\x1a\n")
        overrides = [f"dataset.path={tmp_path}"] + (["dataset.test=null"] if path.name == "bert_imdb.yaml" else [])
    if path.name == "gpt2_lora_instruct.yaml":
        (tmp_path / "i.jsonl").write_text('{"instruction": "a", "response": "b"}\n')
        overrides = [f"dataset.path={tmp_path / 'i.jsonl'}"]
    loaded = load_config(path, overrides)
    assert loaded.config.model.layers or loaded.config.model.task
    assert loaded.config.training.epochs >= 1


def test_resolved_config_fills_defaults_and_keeps_values():
    resolved = load_config(CONFIGS / "mnist.yaml").resolved()
    assert resolved["seed"] == 42
    assert resolved["optimizer"] == {"Adam": {"learning_rate": 0.001}}
    assert resolved["model"]["layers"][1] == "Flatten"
    assert resolved["training"]["batch_size"] == 32
    assert resolved["training"]["steps_per_execution"] == 50


def test_missing_seed_is_drawn_and_recorded(write_config):
    text = SYNTHETIC.replace("seed: 7\n", "")
    first = load_config(write_config(text)).config.seed
    assert isinstance(first, int)


def test_overrides_are_typed_like_their_field(write_config):
    path = write_config(SYNTHETIC)
    loaded = load_config(path, ["training.epochs=4", "optimizer.Adam.learning_rate=3e-4",
                                "model.layers[0].Dense.units=64", "dataset.input_shape=[4, 2]"])
    assert loaded.config.training.epochs == 4
    assert loaded.config.optimizer == {"Adam": {"learning_rate": 0.0003}}
    assert loaded.config.model.layers[0] == {"Dense": {"units": 64, "activation": "relu"}}
    assert loaded.config.dataset.input_shape == [4, 2]


def test_override_turns_a_bare_layer_into_a_mapping(write_config):
    path = write_config(SYNTHETIC.replace("    - Dropout: {rate: 0.1}\n", "    - Flatten\n"))
    loaded = load_config(path, ["model.layers[1].Flatten.data_format=channels_last"])
    assert loaded.config.model.layers[1] == {"Flatten": {"data_format": "channels_last"}}


def test_parse_key_path():
    assert parse_key_path("model.layers[2].Dense.units") == ("model", "layers", 2, "Dense", "units")
    assert parse_key_path("seed") == ("seed",)


def test_yaml_12_floats_are_numbers(write_config):
    path = write_config(SYNTHETIC.replace("learning_rate: 0.01", "learning_rate: 1e-3"))
    assert load_config(path).config.optimizer == {"Adam": {"learning_rate": 0.001}}


def test_extends_merges_mappings_and_replaces_lists(write_config):
    write_config(SYNTHETIC, "base.yaml")
    child = write_config("extends: base.yaml\ntraining: {epochs: 9}\nmetrics: []\n", "child.yaml")
    loaded = load_config(child)
    assert loaded.config.training.epochs == 9
    assert loaded.config.training.batch_size == 32
    assert loaded.config.metrics == []
    assert loaded.config.name == "tiny"


def test_extends_error_points_into_the_file_that_has_the_mistake(write_config, tmp_path):
    write_config(SYNTHETIC.replace("batch_size: 32", "batch_sise: 32"), "base.yaml")
    child = write_config("extends: base.yaml\n", "child.yaml")
    message = error_of(child)
    assert message == (f"{tmp_path / 'base.yaml'}:21:3 (via extends at F:1:1): training.batch_sise: "
                       "unknown key 'batch_sise' (did you mean 'batch_size'?)")


def test_extends_cycle_is_an_error(write_config, tmp_path):
    write_config("extends: b.yaml\n", "a.yaml")
    b = write_config("extends: a.yaml\n", "b.yaml")
    assert error_of(b) == (f"{tmp_path / 'a.yaml'}:1:1: extends: 'extends' forms a cycle: b.yaml -> a.yaml -> b.yaml "
                           "(remove one of the 'extends' lines)")


# (change to the tiny config, overrides, exact message with the file shown as F)
BROKEN = [
    (("epochs: 2", "epoch: 2"), (), "F:20:3: training.epoch: unknown key 'epoch' (did you mean 'epochs'?)"),
    (("epochs: 2", "epochs: abc"), (), "F:20:3: training.epochs: expected an integer, got 'abc'"),
    (None, ("training.epochs=abc",), "--set: training.epochs: expected an integer, got 'abc'"),
    (None, ("training.epochs=0",), "--set: training.epochs: expected a number >= 1, got 0"),
    (None, ("model.layers[7].Dense.units=3",),
     "--set: model.layers[7]: index [7] is out of range (the list has 3 items)"),
    (None, ("training.epochs",), "--set: an override must look like key.path=value (for example --set training.epochs=3)"),
    (("name: synthetic", "name: synthetc"), (), "F:4:3: dataset.name: unknown dataset 'synthetc' (did you mean 'synthetic'?)"),
    (("validation_split: 0.25", "validation_split: 1.5"), (),
     "F:9:3: dataset.validation_split: expected a number < 1.0, got 1.5"),
    (("metrics: [accuracy]", "metrics: accuracy"), (), "F:18:1: metrics: expected a list, got 'accuracy' (write [accuracy])"),
    (("optimizer:", "optimiser:"), (), "F:16:1: optimiser: unknown key 'optimiser' (did you mean 'optimizer'?)"),
    (("    - Dropout: {rate: 0.1}", "    - [Dropout]"), (),
     "F:13:7: model.layers[1]: expected a name like 'Dense' or a one-key mapping like {Dense: {units: 10}}, got ['Dropout']"),
    (("    - Dropout: {rate: 0.1}", "    - Dropout: 0.1"), (),
     "F:13:7: model.layers[1]: arguments of 'Dropout' must be a mapping like {units: 10}, got 0.1"),
    (("name: tiny", "name: ../escape"), (),
     "F:1:1: name: run name '../escape' is not allowed (use letters, digits, '.', '_' and '-' (it becomes a folder name))"),
    (("seed: 7", "seed: !!python/object/apply:os.system ['true']"), (),
     "F:2:7: YAML tag '!!python/object/apply:os.system' is not allowed "
     "(configs hold plain data only: names, numbers, strings, lists and mappings)"),
    (("batch_size: 32", "batch_size: 32\n  batch_size: 64"), (),
     "F:22:3: training.batch_size: duplicate key 'batch_size' (YAML keeps only the last one; remove one of them)"),
    (("loss: sparse_categorical_crossentropy\n", ""), (), "F: loss: required key is missing (add 'loss:' at the top level)"),
    (("  train_size: 240", "  train_size: 240\n  num_class: 3"), (),
     "F:8:3: dataset.num_class: unknown key 'num_class' (did you mean 'num_classes'?)"),
    (("    - Dropout: {rate: 0.1}", "    - Dropout: {rate: 0.1, inputs: nowhere}"), (),
     "F:13:28: model.layers[1].Dropout.inputs: no layer or input named 'nowhere' (name an earlier layer with 'name:')"),
]


@pytest.mark.parametrize("change, overrides, expected", BROKEN, ids=[b[2][:50] for b in BROKEN])
def test_broken_configs_give_exact_messages(write_config, change, overrides, expected):
    text = SYNTHETIC if change is None else SYNTHETIC.replace(*change)
    assert text != SYNTHETIC or change is None, "the change did not apply"
    assert error_of(write_config(text), *overrides) == expected


def test_yaml_syntax_error_shows_the_line_and_a_caret(write_config):
    message = error_of(write_config(SYNTHETIC.replace("metrics: [accuracy]", "metrics: [accuracy")))
    assert message == (
        "F:19:9: invalid YAML: expected ',' or ']', but got ':'\n"
        "  training:\n"
        "          ^"
    )


def test_alias_bomb_is_refused_quickly(write_config):
    lines = ["a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for prev, name in zip("abcdefg", "bcdefgh"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    message = error_of(write_config("\n".join(lines) + "\n"))
    assert "config expands to more than 100,000 values" in message


def test_missing_file_and_empty_file(tmp_path, write_config):
    assert error_of(tmp_path / "nope.yaml") == "F: config file not found (check the path)"
    assert error_of(write_config("")) == "F: config file is empty (a config needs at least 'dataset', 'model' and 'loss')"


GRAPH = """\
seed: 1
dataset: {name: synthetic, input_shape: [8], num_classes: 3}
model:
  layers:
    - Dense: {name: a, units: 8}
    - Dense: {name: b, units: 8}
    - Add: {inputs: [a, b]}
    - Dense: {units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
"""


def test_graph_references_are_checked(write_config):
    assert load_config(write_config(GRAPH)).config.model.layers[2] == {"Add": {"inputs": ["a", "b"]}}
    later = GRAPH.replace("Dense: {name: b, units: 8}", "Dense: {name: b, units: 8, inputs: c}").replace(
        "Add: {inputs: [a, b]}", "Add: {name: c, inputs: [a, b]}")
    assert error_of(write_config(later)) == (
        "F:6:34: model.layers[1].Dense.inputs: the layers form a cycle: b -> c -> b "
        "(a model is a graph without loops; take an earlier layer as input)")
    unused = GRAPH.replace("Add: {inputs: [a, b]}", "Add: {inputs: [b, b]}").replace(
        "{name: b, units: 8}", "{name: b, units: 8, inputs: input}")
    assert error_of(write_config(unused)) == (
        "F:5:7: model.layers[0].Dense: layer 'a' is never used: it feeds no layer and is not in model.outputs "
        "(list it in model.outputs or remove it)")
