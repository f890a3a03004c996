"""Code named by a config (custom_objects, a run folder's pythonpath.txt, safe_mode: false) runs only with
--trust-code: every command that would run it refuses first, and with the flag the same commands work."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SYNTHETIC
from dltrain.cli import app

runner = CliRunner()
MODULE = "trust_probe_blocks"
# The user's module: it leaves a marker file beside itself when (and only when) it is imported.
CUSTOM_MODULE = '''\
import pathlib

pathlib.Path(__file__).with_name("imported.txt").write_text("imported")

import keras


class Scale(keras.layers.Layer):
    def call(self, x):
        return x * 0.5
'''
CUSTOM = SYNTHETIC.replace("    - Dense: {units: 16, activation: relu}", "    - Scale\n    - Dense: {units: 16, activation: relu}") \
    .replace("  epochs: 2", "  epochs: 1") + f"custom_objects: [{MODULE}:Scale]\n"
REFUSED = "pass --trust-code if the code is yours or you trust it"


def invoke(*args: object, env: dict[str, str] | None = None):
    return runner.invoke(app, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A config with custom_objects beside its module, and one run of it trained with --trust-code; the
    commands run from another folder, so a run folder finds the module through its pythonpath.txt only."""
    root = tmp_path_factory.mktemp("trust")
    (root / "project").mkdir()
    (root / "project" / f"{MODULE}.py").write_text(CUSTOM_MODULE)
    config = root / "project" / "custom.yaml"
    config.write_text(CUSTOM)
    (root / "elsewhere").mkdir()
    np.save(root / "elsewhere" / "x.npy", np.zeros((2, 8), "float32"))
    paths = {"config": config, "marker": root / "project" / "imported.txt", "root": root,
             "out": root / "outputs", "elsewhere": root / "elsewhere"}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(paths["elsewhere"])
        patch.setattr(sys, "path", list(sys.path))
        result = invoke("train", config, "--output-dir", paths["out"], "--no-progress", "--trust-code")
        assert result.exit_code == 0, result.output
    paths["run"] = Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))
    assert (paths["run"] / "pythonpath.txt").read_text() == f"{root / 'project'}\n"
    assert paths["marker"].exists()
    yield paths
    sys.modules.pop(MODULE, None)


@pytest.fixture
def fresh(project: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The module not imported yet, no marker, sys.path as it was; from the folder beside the project."""
    monkeypatch.chdir(project["elsewhere"])
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, MODULE, raising=False)
    project["marker"].unlink(missing_ok=True)
    return project


def commands(p: dict[str, Path]) -> dict[str, list[object]]:
    return {
        "train": ["train", p["config"], "--output-dir", p["out"], "--no-progress"],
        "check": ["check", p["config"]],
        "evaluate": ["evaluate", p["run"]],
        "save": ["save", p["run"], "--format", "keras", "--out", p["root"] / "export" / "m.keras", "--overwrite"],
        "predict": ["predict", p["run"], "x.npy"],
        "plot": ["plot", p["run"]],
        # The run's config asks for a second epoch: a forced resume trains it.
        "resume": ["resume", p["run"], "--force", "--no-progress"],
    }


NAMES = ["train", "check", "evaluate", "save", "predict", "plot", "resume"]


@pytest.mark.parametrize("name", NAMES)
def test_without_trust_nothing_is_imported(fresh: dict[str, Path], name: str):
    before, runs = list(sys.path), sorted(fresh["out"].iterdir())
    result = invoke(*commands(fresh)[name])
    assert result.exit_code == 1, result.output
    if name in ("train", "check"):
        expected = (f"error: {fresh['config']}:23:1: custom_objects: importing {MODULE}:Scale would run its code "
                    f"({REFUSED})")
    else:
        config = fresh["run"] / "config.yaml"
        line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if text.startswith("custom_objects"))
        expected = (f"error: {config}:{line}:1: custom_objects: importing {MODULE}:Scale, from the folders "
                    f"{fresh['run'] / 'pythonpath.txt'} names, would run its code ({REFUSED})")
    assert result.stderr == expected + "\n"
    assert not fresh["marker"].exists()
    assert MODULE not in sys.modules and sys.path == before
    assert sorted(fresh["out"].iterdir()) == runs  # no run folder either
    assert not (fresh["root"] / "export").exists()


def test_config_schema_runs_and_compare_never_import(fresh: dict[str, Path]):
    for args in (["config", fresh["config"]], ["config", fresh["config"], "--explain"], ["schema"],
                 ["runs", fresh["out"]], ["compare", fresh["run"], fresh["run"]], ["plot", fresh["run"], "--curves-only"]):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    assert not fresh["marker"].exists() and MODULE not in sys.modules


# (`train --trust-code` is the fixture's own run.)
@pytest.mark.parametrize("name", NAMES[1:])
def test_with_trust_the_same_commands_work(fresh: dict[str, Path], name: str):
    if name == "resume":
        config = fresh["run"] / "config.yaml"
        config.write_text(config.read_text().replace("  epochs: 1\n", "  epochs: 2\n"))
    # The environment says it as well as the flag.
    result = invoke(*commands(fresh)[name], *([] if name == "check" else ["--trust-code"]),
                    env={"DLTRAIN_TRUST_CODE": "1"} if name == "check" else None)
    assert result.exit_code == 0, result.output
    assert fresh["marker"].exists()
    expected = {"check": "config OK", "evaluate": "test", "save": "saved keras: ",
                "predict": "x.npy[1]", "plot": "wrote ", "resume": "resumed after epoch 1"}[name]
    assert expected in result.stdout


SAFE_MODE_OFF = SYNTHETIC + "safe_mode: false\n"


def test_safe_mode_off_loads_a_bytecode_lambda_only_with_trust(tmp_path: Path):
    import keras

    marker = tmp_path / "ran"
    target = str(marker)  # the lambda's closure must be plain data for Keras to save it
    inputs = keras.Input((8,))
    # A lambda that writes a file whenever it runs: Keras stores its bytecode in the .keras file.
    outputs = keras.layers.Lambda(lambda x: (open(target, "w").close(), x)[1])(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(outputs))
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(tmp_path / "lambda.keras")
    marker.unlink()
    config = tmp_path / "off.yaml"
    config.write_text(SAFE_MODE_OFF)

    args = ["evaluate", "--model", tmp_path / "lambda.keras", "--config", config]
    result = invoke(*args)
    assert result.exit_code == 1
    assert result.stderr == (f"error: {config}:22:1: safe_mode: safe_mode: false lets Python code in this config and "
                             f"in the models it saves or loads run (Lambda bytecode, TFSMLayer) ({REFUSED})\n")
    assert not marker.exists()
    result = invoke(*args, "--trust-code")
    assert result.exit_code == 0, result.output
    assert marker.exists()  # the user said so: Keras's guard is off and the bytecode ran
    assert "accuracy" in result.stdout
