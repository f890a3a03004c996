"""The `training:` keys that make training fast: cache, mixed_precision, jit_compile, really exercised."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SYNTHETIC
from dltrain.cli import app
from dltrain.load import load_config

runner = CliRunner()


def train(config: Path, out: Path, *sets: str) -> Path:
    args = ["train", str(config), "--output-dir", str(out), "--no-progress"]
    for item in sets:
        args += ["--set", item]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))


def test_cached_pipelines_yield_what_uncached_ones_do():
    from dltrain import data

    split = data.Split(np.arange(100, dtype=np.uint8).reshape(50, 2), np.arange(50))
    plain = [y.numpy().tolist() for _, y in data.to_dataset(split, 8)]
    cached = data.to_dataset(split, 8, cache=True)
    assert [y.numpy().tolist() for _, y in cached] == plain
    assert [y.numpy().tolist() for _, y in cached] == plain  # the second pass comes from the cache
    shuffled = data.to_dataset(split, 8, shuffle=True, seed=3, cache=True)
    first, second = ([y.numpy() for _, y in shuffled] for _ in range(2))
    # The examples are cached, not the batches: every epoch still sees a fresh order of all of them.
    assert not all(np.array_equal(a, b) for a, b in zip(first, second))
    assert sorted(np.concatenate(first)) == sorted(np.concatenate(second)) == list(range(50))


def test_file_cache_is_written_per_split_and_reused_only_for_the_same_data(tmp_path: Path, write_config):
    config = write_config(SYNTHETIC)
    prefix = tmp_path / "cache" / "tiny-"
    first = train(config, tmp_path / "a", f"training.cache={prefix}")
    files = sorted(p.name for p in prefix.parent.iterdir() if p.name.endswith(".index"))
    # The shuffled training split is drawn by (seed, epoch) from memory (resume replays it), so only the
    # fixed validation and test batches are cached; an unshuffled training split is cached too.
    assert [f.split("-")[1] for f in files] == ["test", "val"]
    stamps = {p: p.stat().st_mtime_ns for p in prefix.parent.iterdir()}

    again = train(config, tmp_path / "b", f"training.cache={prefix}")
    assert {p: p.stat().st_mtime_ns for p in prefix.parent.iterdir()} == stamps  # read, not rewritten
    metrics = [json.loads((run / "metrics.json").read_text())["test"] for run in (first, again)]
    assert metrics[0] == metrics[1]

    # Another seed draws other data: new files, never the stale cache of the first data.
    train(config, tmp_path / "c", f"training.cache={prefix}", "seed=8")
    assert len([p for p in prefix.parent.iterdir() if p.name.endswith(".index")]) == 4
    train(config, tmp_path / "d", f"training.cache={prefix}", "training.shuffle=false")
    assert any(p.name.split("-")[1] == "train" for p in prefix.parent.iterdir() if p.name.endswith(".index"))


def test_cache_off_trains_the_same_model(tmp_path: Path, write_config):
    config = write_config(SYNTHETIC)
    on = train(config, tmp_path / "on")
    off = train(config, tmp_path / "off", "training.cache=false")
    assert json.loads((on / "metrics.json").read_text())["test"] == \
        json.loads((off / "metrics.json").read_text())["test"]


def test_mixed_precision_builds_the_model_under_the_policy_and_restores_it(tmp_path: Path, write_config):
    import keras

    run = train(write_config(SYNTHETIC), tmp_path, "training.mixed_precision=mixed_bfloat16")
    model = keras.saving.load_model(run / "model.keras")
    dense = [layer for layer in model.layers if layer.weights]
    assert {layer.dtype_policy.name for layer in dense} == {"mixed_bfloat16"}
    assert dense[0].compute_dtype == "bfloat16" and dense[0].kernel.dtype == "float32"
    assert json.loads((run / "metrics.json").read_text())["test"]["accuracy"] > 0.6  # chance is 0.33
    assert keras.config.dtype_policy().name == "float32"  # later runs in this process are unaffected


def test_mixed_precision_rejects_unknown_policies(write_config):
    result = runner.invoke(app, ["train", str(write_config(SYNTHETIC)), "--set", "training.mixed_precision=fp8"])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(
        "training.mixed_precision: expected False, 'mixed_bfloat16' or 'mixed_float16', got 'fp8'")


@pytest.mark.parametrize("value, expected", [("auto", False), ("true", True), ("false", False)])
def test_jit_compile_reaches_keras(write_config, value: str, expected: bool):
    # "auto" is Keras's rule: XLA off on a CPU-only machine (these tests run on CPU), on with a GPU.
    from dltrain.model.builder import check

    model = check(load_config(write_config(SYNTHETIC), [f"training.jit_compile={value}"]))
    assert model.jit_compile is expected


def run_fresh(code: str, *args: str) -> str:
    """Run Python code in a fresh process (TensorFlow not yet running) and return its stdout."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


TRAIN_AND_PRINT_POOLS = (
    "import sys; from pathlib import Path; import tensorflow as tf\n"
    "from dltrain.load import load_config; from dltrain.training import train\n"
    "train(load_config(sys.argv[1], sys.argv[3:]), Path(sys.argv[2]), progress=False)\n"
    "print(tf.config.threading.get_intra_op_parallelism_threads(),"
    " tf.config.threading.get_inter_op_parallelism_threads())\n"
)


def test_thread_pools_are_sized_in_a_fresh_process(tmp_path: Path, write_config):
    config = str(write_config(SYNTHETIC))
    explicit = run_fresh(TRAIN_AND_PRINT_POOLS, config, str(tmp_path / "a"),
                         "training.intra_op_parallelism_threads=1", "training.inter_op_parallelism_threads=2")
    assert explicit.split() == ["1", "2"]
    # auto: the tiny Dense model gets one thread in each pool; null keeps TensorFlow's default (0).
    assert run_fresh(TRAIN_AND_PRINT_POOLS, config, str(tmp_path / "b")).split() == ["1", "1"]
    assert run_fresh(TRAIN_AND_PRINT_POOLS, config, str(tmp_path / "c"), "training.intra_op_parallelism_threads=null",
                     "training.inter_op_parallelism_threads=null").split() == ["0", "0"]


def test_auto_threads_rule_on_the_shipped_configs_and_edges(write_config):
    from conftest import CONFIGS
    from dltrain.training import threads

    mlp = load_config(CONFIGS / "fashion_mnist.yaml")
    assert threads.step_multiply_adds(mlp, (28, 28)) == (784 * 128 + 128 * 10) * 32
    assert threads.choose(mlp, (28, 28)) == {"intra_op_parallelism_threads": 1, "inter_op_parallelism_threads": 1}
    cnn = load_config(CONFIGS / "fashion_mnist_cnn.yaml")
    assert threads.step_multiply_adds(cnn, (28, 28)) is None  # convolutions: TensorFlow's pools
    assert set(threads.choose(cnn, (28, 28)).values()) == {None}
    wide = load_config(CONFIGS / "fashion_mnist.yaml", ["model.layers[2].Dense.units=4096"])
    assert threads.step_multiply_adds(wide, (28, 28)) > threads.SMALL_STEP
    assert set(threads.choose(wide, (28, 28)).values()) == {None}
    fixed = load_config(CONFIGS / "fashion_mnist_cnn.yaml", ["training.intra_op_parallelism_threads=2"])
    assert threads.choose(fixed, (28, 28))["intra_op_parallelism_threads"] == 2


@pytest.mark.parametrize("value, message", [
    ("-1", "expected a thread count >= 0, 'auto' or null, got -1"),
    ("many", "expected a thread count >= 0, 'auto' or null, got 'many'"),
])
def test_thread_counts_are_checked(write_config, value: str, message: str):
    result = runner.invoke(app, ["check", str(write_config(SYNTHETIC)),
                                 "--set", f"training.inter_op_parallelism_threads={value}"])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: --set: training.inter_op_parallelism_threads: {message}"


def test_thread_pools_cannot_change_once_tensorflow_runs(tmp_path: Path, write_config):
    import tensorflow as tf

    tf.constant(1) + 1  # TensorFlow has run an operation: its pools are fixed
    current = tf.config.threading.get_intra_op_parallelism_threads()
    config = write_config(SYNTHETIC + f"  intra_op_parallelism_threads: {current + 3}\n")
    result = runner.invoke(app, ["train", str(config), "--output-dir", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: {config}:22:3: training.intra_op_parallelism_threads: TensorFlow already runs in this process "
        f"with intra_op_parallelism_threads={current}; it cannot change (set it in a fresh process (the dltrain "
        "command) or remove it)")
    assert not (tmp_path / "out").exists()
    # "auto" is only a speed-up: where it cannot apply, training goes on with the pools there are.
    assert runner.invoke(app, ["train", str(write_config(SYNTHETIC)), "--output-dir", str(tmp_path / "auto"),
                               "--no-progress"]).exit_code == 0


def test_auto_threads_leave_config_mistakes_to_the_model_builder(tmp_path: Path, write_config):
    config = write_config(SYNTHETIC.replace("Dense: {units: 16, activation: relu}", "Dense: {activation: relu}"))
    result = runner.invoke(app, ["train", str(config), "--output-dir", str(tmp_path), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.startswith(f"error: {config}:12:7: model.layers[0].Dense")
