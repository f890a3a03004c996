"""The CLI end to end with Typer's CliRunner: train -> evaluate -> save -> reload."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conftest import SYNTHETIC
from dltrain.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny synthetic training run shared by the tests that read its folder."""
    root = tmp_path_factory.mktemp("run")
    config = root / "tiny.yaml"
    config.write_text(SYNTHETIC)
    result = invoke("train", config, "--output-dir", root / "outputs", "--no-progress")
    assert result.exit_code == 0, result.output
    match = re.search(r"^run folder: (.+)$", result.stdout.strip(), re.M)
    return Path(match.group(1))


def test_every_command_has_help():
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        result = invoke(name, "--help")
        assert result.exit_code == 0 and "Usage" in result.output, name
        assert command.callback.__doc__, f"{name} has no docstring"


def test_help_is_fast_and_does_not_import_tensorflow():
    code = ("import sys; from dltrain.cli import app; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dltrain", "--help"], check=True, capture_output=True)
    assert time.perf_counter() - start < 2.0


def test_run_folder_has_everything(trained_run: Path):
    assert {p.name for p in trained_run.iterdir()} >= {"config.yaml", "model.keras", "history.csv",
                                                        "metrics.json", "dataset.json"}
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert set(metrics["test"]) == {"loss", "accuracy"} and metrics["epochs"] == 2
    rows = list(csv.DictReader((trained_run / "history.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) >= {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"}
    resolved = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert resolved["seed"] == 7 and resolved["training"]["epochs"] == 2
    assert not [p for p in trained_run.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_training_learns_the_synthetic_task(trained_run: Path):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.6  # three classes: chance is 0.33


def test_evaluate_reproduces_the_test_metrics(trained_run: Path):
    result = invoke("evaluate", trained_run, "--json")
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    saved = json.loads((trained_run / "metrics.json").read_text())["test"]
    assert scored["accuracy"] == pytest.approx(saved["accuracy"], abs=1e-6)
    assert scored["loss"] == pytest.approx(saved["loss"], rel=1e-5)
    table = invoke("evaluate", "--model", trained_run / "model.keras", "--config", trained_run / "config.yaml")
    assert table.exit_code == 0 and "accuracy" in table.stdout


def test_save_every_format_and_reload(trained_run: Path, tmp_path: Path):
    import keras
    import tensorflow as tf

    from dltrain import data
    from dltrain.config import DatasetConfig

    x = data.load(DatasetConfig(name="synthetic", input_shape=[8], num_classes=3, train_size=240, test_size=60),
                  7).test.x[:16]
    original = keras.saving.load_model(trained_run / "model.keras").predict(x, verbose=0)

    result = invoke("save", trained_run, "--format", "savedmodel", "--out", tmp_path / "sm")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == f"saved savedmodel: {tmp_path / 'sm'}"
    exported = tf.saved_model.load(str(tmp_path / "sm"))  # keep a reference: serve() needs its variables
    served = exported.serve(tf.constant(x))
    np.testing.assert_allclose(served.numpy(), original, rtol=1e-5, atol=1e-6)

    assert invoke("save", trained_run, "--format", "keras", "--out", tmp_path / "m.keras").exit_code == 0
    reloaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), original, rtol=1e-6)

    assert invoke("save", trained_run, "--format", "weights", "--out", tmp_path / "w.weights.h5").exit_code == 0
    reloaded.set_weights([np.zeros_like(w) for w in reloaded.get_weights()])
    reloaded.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), original, rtol=1e-6)

    again = invoke("save", trained_run, "--format", "keras", "--out", tmp_path / "m.keras")
    assert again.exit_code == 1
    assert again.stderr.strip() == f"error: '{tmp_path / 'm.keras'}' already exists (choose another --out or pass --overwrite)"


def test_training_the_saved_config_reproduces_the_run(trained_run: Path, tmp_path: Path):
    result = invoke("train", trained_run / "config.yaml", "--output-dir", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    (again,) = tmp_path.iterdir()
    first = json.loads((trained_run / "metrics.json").read_text())
    second = json.loads((again / "metrics.json").read_text())
    assert second["test"] == first["test"] and second["train"] == first["train"]


def test_train_with_overrides_and_progress(tmp_path: Path, write_config):
    config = write_config(SYNTHETIC)
    result = invoke("train", config, "--output-dir", tmp_path / "out", "--set", "training.epochs=1",
                    "--set", "model.layers[0].Dense.units=4")
    assert result.exit_code == 0, result.output
    assert "epoch 1/1" in result.stderr
    (run,) = (tmp_path / "out").iterdir()
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["layers"][0] == {"Dense": {"units": 4, "activation": "relu"}}
    assert resolved["training"]["epochs"] == 1


def test_check_prints_the_layer_table(write_config):
    result = invoke("check", write_config(SYNTHETIC))
    assert result.exit_code == 0, result.output
    assert re.search(r"dense\s+│ Dense\s+│ \(None, 16\)\s+│ 144", result.stdout)
    assert "195 parameters (195 trainable, 0 frozen); config OK" in result.stdout


BAD = [
    ("missing file", None, "error: {dir}/nope.yaml: config file not found (check the path)"),
    ("invalid yaml", SYNTHETIC.replace("metrics: [accuracy]", "metrics: [accuracy"),
     "error: {cfg}:19:9: invalid YAML: expected ',' or ']', but got ':'\n  training:\n          ^"),
    ("wrong type", SYNTHETIC.replace("epochs: 2", "epochs: two"),
     "error: {cfg}:20:3: training.epochs: expected an integer, got 'two'"),
    ("unknown layer", SYNTHETIC.replace("Dropout:", "Dropuot:"),
     "error: {cfg}:13:7: model.layers[1].Dropuot: unknown layer 'Dropuot' (did you mean 'Dropout' or 'AlphaDropout' or 'Dot'?)"),
    ("unknown argument", SYNTHETIC.replace("rate: 0.1", "rat: 0.1"),
     "error: {cfg}:13:17: model.layers[1].Dropout.rat: unknown argument 'rat' of Dropout (did you mean 'rate'?)"),
    ("shape", SYNTHETIC.replace("Dropout: {rate: 0.1}", "Reshape: {target_shape: [3, 3]}"),
     "error: {cfg}:13:7: model.layers[1].Reshape: Reshape cannot take input of shape (None, 16): The total size "
     "of the tensor must be unchanged. Received: input_shape=(16,), target_shape=(3, 3) "
     "(check this layer's arguments and the layers before it)"),
    ("labels", SYNTHETIC.replace("units: 3, activation", "units: 2, activation"),
     None),
]


@pytest.mark.parametrize("what, text, expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_exits_1_with_one_message_and_no_run_folder(tmp_path: Path, what, text, expected):
    config = tmp_path / ("nope.yaml" if text is None else "bad.yaml")
    if text is not None:
        config.write_text(text)
    result = invoke("train", config, "--output-dir", tmp_path / "outputs", "--no-progress")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    if expected is None:
        assert result.stderr.startswith(f"error: {config}:15:1: loss: the loss cannot compare the model's output "
                                        "(None, 2) with the labels (integers):")
        assert result.stderr.strip().endswith("(the dataset has 3 classes; check the last layer's units and the loss)")
    else:
        assert result.stderr.strip() == expected.format(cfg=config, dir=tmp_path)
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").iterdir())


def test_evaluate_on_a_missing_run_folder(tmp_path: Path):
    result = invoke("evaluate", tmp_path / "nowhere")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: run folder '{tmp_path / 'nowhere'}' not found (list your runs with: ls outputs/)"


def test_run_files_get_the_usual_permissions(trained_run: Path, tmp_path: Path):
    """Atomic writes go through mkstemp (mode 0600); the files must end up like any file the user makes."""
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    expected = plain.stat().st_mode & 0o777
    for name in ("config.yaml", "model.keras", "metrics.json", "history.csv"):
        assert (trained_run / name).stat().st_mode & 0o777 == expected, name
