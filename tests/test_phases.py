"""Training plans: `training.phases` (fine-tuning in one run) and `training.class_weight`."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import numpy as np
import pytest

from conftest import SYNTHETIC, cli, train_text

# Two phases: the head alone on a frozen body, then everything at a lower rate with a new optimizer.
PHASED = SYNTHETIC.replace("{units: 16, activation: relu}", "{units: 16, activation: relu, name: body}") \
    .replace("{units: 3, activation: softmax}", "{units: 3, activation: softmax, name: head}") \
    .replace("  epochs: 2\n", "") + """\
  phases:
    - {epochs: 2, trainable: {body: false}}
    - epochs: 3
      trainable: {"*": true}
      optimizer: {SGD: {learning_rate: 0.001}}
"""


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    return result.stderr.strip()


# --- the config (these tests import no TensorFlow) -----------------------------------------------------------------

def test_phases_config_mistakes_point_at_their_line(write_config):
    both = write_config(PHASED.replace("  batch_size: 32\n", "  batch_size: 32\n  epochs: 4\n"))
    assert error_line(cli("config", both)) == (
        f"error: {both}:21:3: training.epochs: 'epochs' cannot be set beside 'phases': the run's epochs are the "
        "phases' sum (remove training.epochs, or give each phase its epochs)")
    unknown = write_config(PHASED.replace("      optimizer:", "      optimiser:"), "unknown.yaml")
    assert error_line(cli("config", unknown)) == (
        f"error: {unknown}:25:7: training.phases[1].optimiser: unknown key 'optimiser' (did you mean 'optimizer'?)")
    config = write_config(PHASED, "ok.yaml")
    by_set = cli("config", config, "--set", "training.epochs=4")
    assert "training.epochs: 'epochs' cannot be set beside 'phases'" in error_line(by_set)
    missing = write_config(PHASED.replace("    - epochs: 3\n      trainable", "    - trainable"), "missing.yaml")
    assert error_line(cli("config", missing)) == (
        f"error: {missing}:23:7: training.phases[1].epochs: required key is missing (add 'epochs:' under "
        "'training.phases[1]')")


def test_phases_resolve_with_set_and_explain(write_config):
    config = write_config(PHASED)
    shown = cli("config", config, "--set", "training.phases[1].optimizer.SGD.learning_rate=0.005")
    assert shown.exit_code == 0, shown.output
    assert "\n  epochs: 5" not in shown.stdout  # config.yaml keeps the phases, not their sum
    assert "    optimizer:\n      SGD: {learning_rate: 0.005}\n" in shown.stdout
    explained = cli("config", config, "--explain", "--set", "training.phases[0].epochs=1")
    assert explained.exit_code == 0, explained.output
    lines = explained.stdout.splitlines()
    assert any(line.startswith("training.phases[0].epochs: 1 ") and line.endswith("# --set")
               for line in lines), lines
    assert any(line.startswith("training.phases[1].trainable.*: true ") and line.endswith(f"# {config}:24:19")
               for line in lines), lines


def test_a_key_inside_a_phase_is_a_sweep_parameter(write_config):
    from dltrain.errors import ConfigError
    from dltrain.load import load_config
    from dltrain.sweep import check_space

    sweep = """\
sweep:
  metric: {name: val_accuracy, goal: maximize}
  trials: 2
  parameters:
    training.phases[1].optimizer.SGD.learning_rate: {values: [0.001, 0.01]}
    training.phases[0].epochs: {values: [1, 3]}
"""
    space = check_space(load_config(write_config(PHASED + sweep)))
    assert [p.key for p in space.parameters] == ["training.phases[1].optimizer.SGD.learning_rate",
                                                 "training.phases[0].epochs"]
    wrong = write_config(PHASED + sweep.replace("phases[0].epochs", "phases[0].epoch"), "wrong.yaml")
    with pytest.raises(ConfigError) as raised:
        check_space(load_config(wrong))
    assert str(raised.value) == (f"{wrong}:31:41: sweep.parameters.training.phases[0].epoch.values[0]: unknown key "
                                 "'epoch' (did you mean 'epochs'?)")


def test_class_weight_config_mistakes(write_config):
    config = write_config(SYNTHETIC.replace("  epochs: 2\n", "  epochs: 2\n  class_weight: heavy\n"))
    assert error_line(cli("config", config)) == (
        f"error: {config}:21:3: training.class_weight: expected 'balanced' or a mapping from class names or "
        "indices to weights, got 'heavy' (e.g. {cat: 1.0, dog: 4.0})")
    negative = write_config(SYNTHETIC.replace("  epochs: 2\n", "  epochs: 2\n  class_weight: {0: -1}\n"), "neg.yaml")
    assert error_line(cli("config", negative)) == (
        f"error: {negative}:21:18: training.class_weight.0: expected a class weight >= 0, got -1")


# --- a tiny two-phase run ------------------------------------------------------------------------------------------

# Phase 1's EarlyStopping ends it after its second epoch (no epoch improves the loss by 10); phase 2 still runs.
STOPPING = PHASED.replace("    - {epochs: 2, trainable: {body: false}}\n", """\
    - epochs: 3
      trainable: {body: false}
      callbacks: [{EarlyStopping: {monitor: loss, min_delta: 10, patience: 0}}]
""")


@pytest.fixture(scope="module")
def phased_run(tmp_path_factory: pytest.TempPathFactory):
    """The two-phase config trained once in this process, with a probe of every epoch."""
    from dltrain.load import load_config
    from dltrain.training import train

    import keras

    root = tmp_path_factory.mktemp("phased")
    (root / "config.yaml").write_text(STOPPING)
    seen, body = [], []

    def record(epoch: int, logs=None) -> None:  # what this epoch will train, and the body's kernel before it
        model, optimizer = probe.model, probe.model.optimizer
        seen.append((epoch + 1, [w.path for w in model.trainable_weights], type(optimizer).__name__,
                     round(float(optimizer.learning_rate.numpy()), 6)))
        body.append(model.get_layer("body").kernel.numpy().copy())

    probe = keras.callbacks.LambdaCallback(on_epoch_begin=record)
    result = train(load_config(root / "config.yaml"), root / "outputs", progress=False, callbacks=[probe])
    return result, seen, body


def test_phases_train_in_one_run(phased_run):
    result, seen, body = phased_run
    rows = list(csv.DictReader((result.run_dir / "history.csv").read_text().splitlines()))
    assert [(row["epoch"], row["phase"]) for row in rows] == [("1", "1"), ("2", "1"), ("3", "2"), ("4", "2"),
                                                              ("5", "2")]
    assert list(rows[0])[:2] == ["epoch", "phase"]
    head, everything = ["head/kernel", "head/bias"], ["body/kernel", "body/bias", "head/kernel", "head/bias"]
    assert seen == [(1, head, "Adam", 0.01), (2, head, "Adam", 0.01), (3, everything, "SGD", 0.001),
                    (4, everything, "SGD", 0.001), (5, everything, "SGD", 0.001)]
    assert np.array_equal(body[0], body[2])  # frozen through phase 1
    assert not np.array_equal(body[2], body[4])  # trained in phase 2
    assert result.epochs == 5
    assert "phase" not in result.metrics["train"]
    assert (result.run_dir / "plots" / "loss.png").is_file()
    status = json.loads((result.run_dir / "status.json").read_text())
    assert (status["state"], status["epoch"], status["epochs"]) == ("finished", 5, 6)


def test_check_prints_each_phase_and_a_glob_that_matches_nothing(write_config):
    config = write_config(PHASED)
    checked = cli("check", config)
    assert checked.exit_code == 0, checked.output
    lines = checked.stdout.splitlines()
    assert "phase 1 (2 epochs): 51 trainable, 144 frozen parameters" in lines
    assert "phase 2 (3 epochs): 195 trainable, 0 frozen parameters" in lines
    wrong = write_config(PHASED.replace("{body: false}", "{bdy*: false}"), "wrong.yaml")
    expected = (f"error: {wrong}:22:31: training.phases[0].trainable.bdy*: no layer of the model matches 'bdy*' "
                "(did you mean 'body'?)")
    assert error_line(cli("check", wrong)) == expected
    trained = cli("train", wrong, "--output-dir", wrong.parent / "outputs", "--no-progress")
    assert error_line(trained) == expected
    assert not (wrong.parent / "outputs").exists() or not any((wrong.parent / "outputs").iterdir())


# Long enough epochs (94 single steps) to kill a process between two of them; dropout makes every epoch's
# randomness count.
SLOW_PHASED = PHASED.replace("train_size: 240", "train_size: 4000") \
    .replace("Dropout: {rate: 0.1}", "Dropout: {rate: 0.3}") \
    .replace("  batch_size: 32\n", "  batch_size: 32\n  steps_per_execution: 1\n") \
    .replace("{SGD: {learning_rate: 0.001}}", "{Adam: {learning_rate: 0.001}}")


@pytest.mark.slow
def test_kill_9_in_phase_2_then_resume_is_bit_identical(tmp_path: Path):
    from test_resume import invoke, max_difference, run_folder, start_training, wait_for_epoch, weights

    config = tmp_path / "slow.yaml"
    config.write_text(SLOW_PHASED)
    process = start_training(config, tmp_path / "killed")
    run = wait_for_epoch(process, tmp_path / "killed", 3)  # the first epoch of phase 2 is checkpointed
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    from dltrain.runs import read_status

    assert read_status(run)["epoch"] == 3  # killed during epoch 4, phase 2's second

    reference = invoke("train", config, "--output-dir", tmp_path / "whole", "--no-progress")
    assert reference.exit_code == 0, reference.output
    resumed = invoke("resume", run, "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.startswith("resumed after epoch 3\n")

    def history(folder: Path) -> list[dict[str, str]]:
        rows = list(csv.DictReader((folder / "history.csv").read_text().splitlines()))
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    whole = run_folder(reference.stdout)
    assert [row["phase"] for row in history(run)] == ["1", "1", "2", "2", "2"]
    assert history(run) == history(whole)
    difference = max_difference(weights(run), weights(whole))
    print(f"max weight difference after kill -9 in phase 2 and resume: {difference}")
    assert difference == 0.0


def test_curves_mark_where_each_phase_starts():
    from dltrain.runs import phase_starts

    rows = [{"epoch": 1.0, "phase": 1.0}, {"epoch": 2.0, "phase": 1.0}, {"epoch": 3.0, "phase": 2.0},
            {"epoch": 4.0, "phase": 3.0}]
    assert phase_starts(rows) == [(2, 2.5), (3, 3.5)]
    assert phase_starts([{"epoch": 1.0}, {"epoch": 2.0}]) == []


# --- class weights -------------------------------------------------------------------------------------------------

ARRAYS = """\
name: weighted
seed: 3
dataset:
  path: arrays.npz
  validation_split: 0.0
model:
  layers:
    - Dense: {units: 3, activation: softmax}
loss: sparse_categorical_crossentropy
metrics: [accuracy]
training:
  epochs: 1
  batch_size: 20
  class_weight: balanced
"""


@pytest.fixture
def arrays(tmp_path: Path) -> Path:
    """100 training examples of 60 cats, 30 dogs and 10 foxes (and 9 test examples)."""
    rng = np.random.default_rng(0)
    y = np.array(["cat"] * 60 + ["dog"] * 30 + ["fox"] * 10)
    np.savez(tmp_path / "arrays.npz", x_train=rng.normal(size=(100, 4)).astype("float32"), y_train=y,
             x_test=rng.normal(size=(9, 4)).astype("float32"), y_test=np.array(["cat", "dog", "fox"] * 3))
    return tmp_path


def test_balanced_weights_follow_scikit_learns_rule(arrays: Path, monkeypatch: pytest.MonkeyPatch):
    from dltrain.training.class_weight import balanced

    assert balanced(np.array([0, 0, 0, 1]), 3) == [4 / 9, 4 / 3, 1.0]  # a class with no example weighs 1
    assert balanced(np.eye(2)[[0, 1, 1, 1]], 2) == [2.0, 2 / 3]  # one-hot labels

    monkeypatch.chdir(arrays)
    run = train_text(arrays, ARRAYS)
    written = json.loads((run / "dataset.json").read_text())
    assert written["class_weight"] == {"cat": 100 / (3 * 60), "dog": 100 / (3 * 30), "fox": 100 / (3 * 10)}


def test_class_weight_by_name_and_its_refusals(arrays: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(arrays)
    # Zero for every class: fit sees a loss of 0, so the weights Keras applies are the ones given.
    run = train_text(arrays, ARRAYS.replace("balanced", "{cat: 0, dog: 0, 2: 0}"))
    assert json.loads((run / "dataset.json").read_text())["class_weight"] == {"cat": 0.0, "dog": 0.0, "fox": 0.0}
    assert float(next(csv.DictReader((run / "history.csv").read_text().splitlines()))["loss"]) == 0.0

    config = arrays / "wrong.yaml"
    config.write_text(ARRAYS.replace("balanced", "{cat: 1, dgo: 4}"))
    assert error_line(cli("train", config, "--no-progress")) == (
        f"error: {config}:14:26: training.class_weight.dgo: no class named 'dgo' (did you mean 'dog'?)")
    config.write_text(ARRAYS.replace("balanced", "{7: 2}"))
    assert error_line(cli("train", config, "--no-progress")) == (
        f"error: {config}:14:18: training.class_weight.7: class index 7 is out of range: the dataset has 3 classes "
        "(0-2)")
    regression = ARRAYS.replace("  validation_split: 0.0\n", "  validation_split: 0.0\n  task: regression\n")
    np.savez(arrays / "numbers.npz", x_train=np.zeros((20, 4), "float32"), y_train=np.linspace(0, 1, 20),
             x_test=np.zeros((4, 4), "float32"), y_test=np.zeros(4))
    config.write_text(regression.replace("arrays.npz", "numbers.npz").replace("units: 3, activation: softmax",
                                                                             "units: 1").replace(
        "sparse_categorical_crossentropy", "mse").replace("[accuracy]", "[mae]"))
    assert error_line(cli("train", config, "--no-progress")) == (
        f"error: {config}:15:3: training.class_weight: class_weight needs classes, and the dataset's labels are not "
        "class indices (a regression) (remove training.class_weight)")
    outputs = ARRAYS.replace("    - Dense: {units: 3, activation: softmax}\n", """\
    - Dense: {units: 3, activation: softmax, name: a}
    - Dense: {units: 3, activation: softmax, name: b, inputs: [a]}
  outputs: [a, b]
""")
    config.write_text(outputs)
    assert error_line(cli("train", config, "--no-progress")) == (
        f"error: {config}:16:3: training.class_weight: class_weight applies to a model with one output; this one "
        "has 2 (a, b) (remove training.class_weight (Keras cannot weigh classes per output; loss_weights weighs "
        "the outputs))")
    assert not (arrays / "outputs").exists() or len(list((arrays / "outputs").iterdir())) == 1
