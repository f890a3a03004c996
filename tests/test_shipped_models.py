"""The shipped configs for attention, several outputs, backbones and blocks each train one epoch on tiny
data the test writes; their saved models load with plain Keras in a process that never imports dltrain."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import CONFIGS
from test_data import write_idx
from test_images import make_folder
from test_text import write_texts
from dltrain.cli import app

QUIET = ["--no-progress", "--set", "training.tensorboard=false"]


def train(config: str, out: Path, *overrides: str) -> Path:
    # One epoch, or one per phase where the overrides give the phases theirs.
    epochs = [] if any(o.startswith("training.phases") for o in overrides) else ["--set", "training.epochs=1"]
    args = ["train", str(CONFIGS / config), "--output-dir", str(out), *QUIET, *epochs]
    result = CliRunner().invoke(app, args + [a for o in overrides for a in ("--set", o)])
    assert result.exit_code == 0, result.output
    return Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


@pytest.fixture
def tiny_mnists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """MNIST and Fashion-MNIST lookalikes (60 training, 20 test images) in $DLTRAIN_DATA."""
    rng = np.random.default_rng(0)
    for name in ("mnist", "fashion_mnist"):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for prefix, count in (("train", 60), ("t10k", 20)):
            write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
            write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    monkeypatch.setenv("DLTRAIN_DATA", str(tmp_path / "data"))


@pytest.mark.parametrize("config, params", [("mnist_dense.yaml", 109_386), ("fashion_mnist_dense.yaml", 109_386)])
def test_the_dense_script_configs_train(config: str, params: int, tiny_mnists, tmp_path: Path):
    run = train(config, tmp_path / "out")
    assert json.loads((run / "dataset.json").read_text())["sizes"] == {"train": 48, "validation": 12, "test": 20}
    summary = (run / "summary.txt").read_text()
    assert f"Trainable params: {params:,}" in summary


def test_blocks_backbones_attention_and_two_outputs_train_and_reload_without_dltrain(tiny_mnists, tmp_path: Path):
    resnet = train("fashion_mnist_resnet.yaml", tmp_path / "out", "training.batch_size=16")
    assert "block2_shortcut_conv2d" in (resnet / "summary.txt").read_text()  # names as the YAML reads
    write_texts(tmp_path / "acl" / "train", 12)
    write_texts(tmp_path / "acl" / "test", 4, seed=1)
    transformer = train("imdb_transformer.yaml", tmp_path / "out", f"dataset.path={tmp_path / 'acl' / 'train'}",
                        f"dataset.test.path={tmp_path / 'acl' / 'test'}", "dataset.output_sequence_length=12")
    images = make_folder(tmp_path / "images", per_class=6, size=(32, 32), classes=["cat", "dog"])
    mobilenet = train("transfer_mobilenet.yaml", tmp_path / "out", f"dataset.path={images}",
                      "dataset.image_size=[32,32]", "model.layers[1].MobileNetV2.weights=null",
                      "model.layers[1].MobileNetV2.alpha=0.35", "training.batch_size=4",
                      "training.phases[0].epochs=1", "training.phases[1].epochs=1")
    rng = np.random.default_rng(0)
    pairs = tmp_path / "pairs.npz"
    np.savez(pairs, encoder=np.eye(71, dtype="float32")[rng.integers(0, 71, (30, 7))],
             decoder=np.eye(93, dtype="float32")[rng.integers(0, 93, (30, 6))], target=rng.integers(0, 93, (30, 6)))
    seq2seq = train("seq2seq.yaml", tmp_path / "out", f"dataset.path={pairs}", "training.batch_size=8")
    metrics = json.loads((seq2seq / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["loss"]) and metrics["epochs"] == 1

    script = f"""
import json, sys
import keras
import numpy as np
found = {{}}
for name, path in {json.dumps({k: str(v / "model.keras") for k, v in [
        ("resnet", resnet), ("transformer", transformer), ("mobilenet", mobilenet), ("seq2seq", seq2seq)]})}.items():
    model = keras.saving.load_model(path)
    found[name] = {{"params": model.count_params(), "layers": [l.name for l in model.layers],
                    "trainable": sum(int(np.prod(w.shape)) for w in model.trainable_weights)}}
found["seq2seq_output"] = list(model.predict({{"encoder": np.zeros((2, 7, 71)), "decoder": np.zeros((2, 6, 93))}},
                                            verbose=0).shape)
print(json.dumps({{"dltrain": any(m.startswith("dltrain") for m in sys.modules), "found": found}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["dltrain"] is False
    found = report["found"]
    assert found["resnet"]["params"] == 152_106 and "block3_main" in found["resnet"]["layers"]
    assert "transformer_1_attention" in found["transformer"]["layers"]
    # Phase 2 of keras.io's recipe unfroze the backbone: the saved model trains it (batch norm's statistics aside).
    assert found["mobilenet"]["trainable"] == 396_128 + 1280 * 2 + 2
    assert [row.split(",")[1] for row in (mobilenet / "history.csv").read_text().splitlines()] == \
        ["phase", "1", "2"]
    assert found["seq2seq"]["params"] == 718_173 and found["seq2seq_output"] == [2, 6, 93]
