"""Shared fixtures: tiny configs in tmp_path, and no network for any test."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"

SYNTHETIC = """\
name: tiny
seed: 7
dataset:
  name: synthetic
  input_shape: [8]
  num_classes: 3
  train_size: 240
  test_size: 60
  validation_split: 0.25
model:
  layers:
    - Dense: {units: 16, activation: relu}
    - Dropout: {rate: 0.1}
    - Dense: {units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
optimizer:
  Adam: {learning_rate: 0.01}
metrics: [accuracy]
training:
  epochs: 2
  batch_size: 32
"""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch the network: built-in datasets must come from local files."""
    monkeypatch.setenv("DLTRAIN_OFFLINE", "1")


@pytest.fixture
def write_config(tmp_path: Path):
    """Write YAML text to tmp_path/<name> and return its path."""
    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path
    return write


def cli(*args):
    """Run the `dltrain` command in-process (Typer's CliRunner), every argument as a string."""
    from typer.testing import CliRunner

    from dltrain.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def run_folder(result) -> Path:
    """The run folder a successful `dltrain train` printed."""
    assert result.exit_code == 0, result.output
    return Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


def train_text(root: Path, text: str) -> Path:
    """Train the config `text` (written to root/config.yaml) into root/outputs; the run folder."""
    config = root / "config.yaml"
    config.write_text(text)
    return run_folder(cli("train", config, "--output-dir", root / "outputs", "--no-progress"))


def signal_while_finishing(monkeypatch: pytest.MonkeyPatch, signal_number: int) -> None:
    """Send this process `signal_number` once training is over and the run finishes (test split, saving)."""
    import os

    from dltrain.training import fit as fitting

    finish = fitting.finish

    def signalled(*args: Any, **kwargs: Any) -> Any:
        os.kill(os.getpid(), signal_number)
        return finish(*args, **kwargs)

    monkeypatch.setattr(fitting, "finish", signalled)
