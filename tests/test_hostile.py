"""Nothing let in: exploit files are refused with a clear message and run none of their code."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SYNTHETIC
from dltrain.cli import app

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def test_billion_laughs_yaml_is_refused_quickly(tmp_path: Path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")  # 10^9 strings in all
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    start = time.perf_counter()
    result = invoke("train", bomb, "--output-dir", tmp_path / "out")
    assert time.perf_counter() - start < 2.0
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(f"error: {bomb}:")
    assert result.stderr.strip().endswith(": config expands to more than 100,000 values (YAML aliases that repeat a "
                                          "large subtree are refused; write the values out)")
    assert not (tmp_path / "out").exists()


def test_python_object_apply_tag_is_refused_and_not_run(tmp_path: Path):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(SYNTHETIC.replace("seed: 7", f"seed: !!python/object/apply:os.system ['touch {marker}']"))
    result = invoke("train", config, "--output-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {config}:2:7: YAML tag '!!python/object/apply:os.system' is not allowed "
        "(configs hold plain data only: names, numbers, strings, lists and mappings)")
    assert not marker.exists()


def test_keras_file_with_a_bytecode_lambda_is_refused_by_safe_mode(tmp_path: Path, write_config):
    import keras

    marker = tmp_path / "pwned"
    target = str(marker)  # the lambda's closure must be plain data for Keras to save it
    inputs = keras.Input((8,))
    # A lambda that writes a file whenever it runs: Keras stores its bytecode in the .keras file.
    outputs = keras.layers.Lambda(lambda x: (open(target, "w").close(), x)[1])(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(outputs))
    model.save(tmp_path / "evil.keras")
    marker.unlink()

    result = invoke("evaluate", "--model", tmp_path / "evil.keras", "--config", write_config(SYNTHETIC))
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert message.startswith(f"error: cannot load model {tmp_path / 'evil.keras'}: Requested the deserialization "
                              "of a `Lambda` layer whose `function` is a Python lambda.")
    assert message.endswith("(is it a .keras file written by dltrain or Keras 3?)")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../escape", "/etc/escape", "a/../../b"])
def test_run_name_cannot_leave_the_output_folder(tmp_path: Path, name: str):
    config = tmp_path / "config.yaml"
    config.write_text(SYNTHETIC.replace("name: tiny", f"name: {name}"))
    result = invoke("train", config, "--output-dir", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"error: {config}:1:1: name: run name '{name}' is not allowed (use letters, "
                                     "digits, '.', '_' and '-' (it becomes a folder name))")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_keras_is_new_enough_for_the_known_loading_fixes():
    import keras

    major, minor, patch = (int(part) for part in keras.__version__.split(".")[:3])
    assert (major, minor, patch) >= (3, 13, 2)
