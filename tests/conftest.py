"""Shared fixtures: tiny configs in tmp_path, and no network for any test."""

from __future__ import annotations

from pathlib import Path

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
