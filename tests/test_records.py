"""What a run leaves to read and reuse: run-folder files, plots, TensorBoard, `runs`, `compare`, `predict`,
`plot`, and MLflow tracking read back with MLflow's own client."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from conftest import SYNTHETIC
from dltrain.runs import history
from dltrain.runs import folders as runs
from dltrain.cli import app

runner = CliRunner()

# A classifier of 8x8 single-channel "images" (so the misclassified grid is drawn), whose EarlyStopping
# restores the best weights. The small learning rate leaves a few test examples wrong.
IMAGES = SYNTHETIC.replace("input_shape: [8]", "input_shape: [8, 8]").replace(
    "  layers:\n", "  layers:\n    - Flatten\n").replace("epochs: 2", "epochs: 4").replace(
    "learning_rate: 0.01", "learning_rate: 0.002") + """\
  callbacks:
    - EarlyStopping: {monitor: val_accuracy, patience: 1, restore_best_weights: true}
"""


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def run_folder(output: str) -> Path:
    return Path(re.search(r"^run folder: (.+)$", output, re.M).group(1))


def png_size(path: Path) -> tuple[int, int]:
    """The size of a PNG file, after PIL has checked that it is a whole, valid image."""
    from PIL import Image

    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG"
        return image.size


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    (root / "images.yaml").write_text(IMAGES)
    result = invoke("train", root / "images.yaml", "--output-dir", root / "out", "--no-progress",
                    "--set", "seed=3", "--set", "name=images")
    assert result.exit_code == 0, result.output
    run = run_folder(result.stdout)
    assert result.stdout.strip().splitlines()[-1] == f"curves: tensorboard --logdir {run / 'tensorboard'}"
    return run


@pytest.fixture(scope="module")
def second_run(image_run: Path) -> Path:
    """The same config with a larger learning rate and no TensorBoard, in the same output folder."""
    result = invoke("train", image_run / "config.yaml", "--output-dir", image_run.parent, "--no-progress",
                    "--set", "optimizer.Adam.learning_rate=0.05", "--set", "training.tensorboard=false")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1].startswith("run folder: ")  # no TensorBoard line
    return run_folder(result.stdout)


def test_run_folder_has_every_file(image_run: Path):
    import keras

    from dltrain.runs.envinfo import config_hash

    names = {p.name for p in image_run.iterdir()}
    assert names >= {"config.yaml", "overrides.txt", "env.json", "model.keras", "best.keras", "history.csv",
                     "metrics.json", "summary.txt", "tensorboard", "plots", "dataset.json", "status.json"}
    assert not [n for n in names if n.startswith(".")], "temp files left behind"
    assert (image_run / "overrides.txt").read_text() == "seed=3\nname=images\n"
    config = yaml.safe_load((image_run / "config.yaml").read_text())
    env = json.loads((image_run / "env.json").read_text())
    assert env["seed"] == 3 == config["seed"]
    assert env["keras"] == keras.__version__ and env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["config_sha256"] == config_hash(config) and len(env["config_sha256"]) == 64
    assert env["device"]["type"] in ("CPU", "GPU") and env["git"] is None  # tmp_path is no git repository
    model = keras.saving.load_model(image_run / "model.keras", safe_mode=True)
    summary = (image_run / "summary.txt").read_text()
    assert summary.startswith('Model: "images"') and f"Total params: {model.count_params():,}" in summary
    assert "Param #" in summary  # the last column is not cropped


def test_metrics_rows_come_from_the_epoch_whose_weights_were_tested(image_run: Path):
    import keras

    metrics = json.loads((image_run / "metrics.json").read_text())
    rows = history.read_history(image_run)
    best_accuracy = max(row["val_accuracy"] for row in rows)
    best = next(row for row in rows if row["val_accuracy"] == best_accuracy)  # EarlyStopping keeps the first
    assert metrics["weights_epoch"] == int(best["epoch"])
    assert metrics["val"] == {"accuracy": best["val_accuracy"], "loss": best["val_loss"]}
    assert metrics["train"] == {"accuracy": best["accuracy"], "loss": best["loss"]}
    # best.keras monitors what EarlyStopping monitors, so it holds the very weights model.keras holds.
    final = keras.saving.load_model(image_run / "model.keras", safe_mode=True).get_weights()
    kept = keras.saving.load_model(image_run / "best.keras", safe_mode=True).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(final, kept))


def test_plots_are_valid_pngs(image_run: Path):
    plots = image_run / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["accuracy.png", "confusion_matrix.png", "loss.png",
                                                       "misclassified.png"]
    for path in plots.iterdir():
        width, height = png_size(path)
        assert width >= 300 and height >= 250, (path.name, width, height)


def test_tensorboard_has_scalars_per_epoch_and_the_graph(image_run: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    epochs = json.loads((image_run / "metrics.json").read_text())["epochs"]
    train = EventAccumulator(str(image_run / "tensorboard" / "train"))
    train.Reload()
    assert [e.step for e in train.Tensors("epoch_loss")] == list(range(epochs))
    assert [e.step for e in train.Tensors("epoch_accuracy")] == list(range(epochs))
    assert "keras" in train.Tags()["tensors"]  # the model graph (TensorBoard's "conceptual graph")
    val = EventAccumulator(str(image_run / "tensorboard" / "validation"))
    val.Reload()
    import tensorflow as tf

    values = [float(tf.make_ndarray(e.tensor_proto)) for e in val.Tensors("epoch_loss")]
    expected = [row["val_loss"] for row in history.read_history(image_run)]
    np.testing.assert_allclose(values, expected, rtol=1e-6)


def test_runs_table_sort_filter_and_json(image_run: Path, second_run: Path):
    output = image_run.parent
    first, second = (history.read_metrics(r) for r in (image_run, second_run))
    listed = invoke("runs", output)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    header = (r"┃ run\s+┃ status\s+┃ epochs ┃ started\s+┃ best val_accuracy ┃ test accuracy ┃ "
              r"train time ┃$")
    assert re.search(header, listed.stdout, re.M)  # no note column: no run has a note
    rows = [line for line in lines if line.startswith("│ images-")]
    assert [row.split("│")[1].strip() for row in rows] == [second_run.name, image_run.name]  # newest first
    for row, run, metrics in zip(rows, (second_run, image_run), (second, first)):
        rows_of_run = history.read_history(run)
        best = max(r["val_accuracy"] for r in rows_of_run)
        epoch = next(int(r["epoch"]) for r in rows_of_run if r["val_accuracy"] == best)
        cells = [cell.strip() for cell in row.split("│")[1:-1]]
        assert cells[1:3] == ["finished", f"{metrics['epochs']}/4"]
        assert cells[4:6] == [f"{best:.4f} (epoch {epoch})", f"{metrics['test']['accuracy']:.4f}"]
        assert re.fullmatch(r"\d+s", cells[6])

    as_json = json.loads(invoke("runs", output, "--json").stdout)
    assert [r["name"] for r in as_json] == [second_run.name, image_run.name]
    assert as_json[1]["test"] == first["test"]["accuracy"] and as_json[1]["metric"] == "accuracy"
    assert as_json[1]["state"] == "finished" and as_json[1]["resume"] is None

    by_test = json.loads(invoke("runs", output, "--json", "--sort", "test").stdout)
    assert [r["test"] for r in by_test] == sorted([r["test"] for r in as_json], reverse=True)
    by_name = json.loads(invoke("runs", output, "--json", "--sort", "name").stdout)
    assert [r["name"] for r in by_name] == sorted([image_run.name, second_run.name])
    chosen = json.loads(invoke("runs", output, "--json", "--filter", "optimizer.Adam.learning_rate=0.05").stdout)
    assert [r["name"] for r in chosen] == [second_run.name]
    assert json.loads(invoke("runs", output, "--json", "--filter", "name=images-*",
                             "--filter", "status=finished").stdout) == as_json
    none = invoke("runs", output, "--filter", "name=nothing-like-this")
    assert none.exit_code == 0 and none.stdout == f"no runs in {output} match\n"
    bad = invoke("runs", output, "--sort", "speed")
    assert bad.exit_code == 1
    assert bad.stderr == ("error: cannot sort by 'speed' (use one of: date, name, status, epochs, val, test, "
                          "duration)\n")


def test_compare_shows_the_differences_and_metrics_side_by_side(image_run: Path, second_run: Path, tmp_path: Path):
    result = invoke("compare", image_run, second_run, "--plot", tmp_path / "curves.png")
    assert result.exit_code == 0, result.output
    text = result.stdout
    differences = text[: text.index("metrics")]
    keys = re.findall(r"^│ (\S+)\s+│", differences, re.M)
    assert keys == ["optimizer.Adam.learning_rate", "training.tensorboard"]
    assert re.search(r"│ optimizer\.Adam\.learning_rate │ 0\.002\s+│ 0\.05\s+│", text)
    assert re.search(r"│ training\.tensorboard\s+│ true\s+│ false\s+│", text)
    first, second = (json.loads((r / "metrics.json").read_text()) for r in (image_run, second_run))
    accuracy = [m["test"]["accuracy"] for m in (first, second)]
    assert re.search(rf"│ test accuracy\s+│\s+{accuracy[0]:.4f} │\s+{accuracy[1]:.4f} │", text)
    assert re.search(rf"│ val loss\s+│\s+{first['val']['loss']:.4f} │\s+{second['val']['loss']:.4f} │", text)
    assert re.search(r"│ status\s+│\s+finished │\s+finished │", text)
    epochs = [m["weights_epoch"] for m in (first, second)]
    assert re.search(rf"│ weights of epoch\s+│\s+{epochs[0]} │\s+{epochs[1]} │", text)
    assert text.strip().endswith(f"wrote {tmp_path / 'curves.png'}")
    width, height = png_size(tmp_path / "curves.png")
    assert width > 2 * height  # two panels side by side: val_loss and val_accuracy

    same = invoke("compare", image_run, image_run)
    assert same.exit_code == 0 and same.stdout.startswith("the configs are the same\n")
    one = invoke("compare", image_run)
    assert one.exit_code == 1
    assert one.stderr == "error: compare needs at least two runs (dltrain compare outputs/a outputs/b)\n"


def _expected_top(run: Path, x: np.ndarray) -> list[list[str]]:
    import keras

    probabilities = keras.saving.load_model(run / "model.keras", safe_mode=True).predict(x, verbose=0)
    names = json.loads((run / "dataset.json").read_text())["class_names"]
    order = np.argsort(-probabilities, axis=1, kind="stable")
    return [[f"{names[j]} {row[j]:.3f}" for j in picks[:3]] for row, picks in zip(probabilities, order)]


def table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in text.splitlines()
            if line.startswith(("│", "┃"))]


def test_predict_images_csv_and_npz(image_run: Path, tmp_path: Path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    for i, image in enumerate(pixels):
        Image.fromarray(image, mode="L").save(tmp_path / f"img{i}.png")
    big = np.kron(pixels[0], np.ones((2, 2), dtype=np.uint8))  # 16x16 RGB: converted and resized to 8x8
    Image.fromarray(np.stack([big] * 3, axis=-1), mode="RGB").save(tmp_path / "big.png")

    result = invoke("predict", image_run, *(tmp_path / f"img{i}.png" for i in range(3)), tmp_path / "big.png")
    assert result.exit_code == 0, result.output
    assert result.stderr == "note: resized to 8x8: big.png\n"
    rows = table_rows(result.stdout)
    assert rows[0] == ["input", "prediction", "#2", "#3"]
    with Image.open(tmp_path / "big.png") as image:
        resized = np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32)
    expected = _expected_top(image_run, np.concatenate([pixels.astype(np.float32), resized[None]]))
    assert rows[1:] == [[f"img{i}.png", *expected[i]] for i in range(3)] + [["big.png", *expected[3]]]

    from dltrain import data
    from dltrain.load import load_config

    loaded = load_config(image_run / "config.yaml")
    test = data.load(loaded.config.dataset, loaded.config.seed).test
    with (tmp_path / "test.csv").open("w", newline="") as handle:  # Kaggle's layout: label, then the pixels
        writer = csv.writer(handle)
        writer.writerow(["label", *(f"pixel{i}" for i in range(64))])
        for x, y in zip(test.x[:5], test.y[:5]):
            writer.writerow([int(y), *(repr(float(v)) for v in x.reshape(-1))])
    np.savez(tmp_path / "test.npz", x=test.x[5:12], y=test.y[5:12])

    result = invoke("predict", image_run, tmp_path / "test.csv", tmp_path / "test.npz", "--out", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 12 predictions to {tmp_path / 'p.csv'}"
    written = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert [r["input"] for r in written] == [f"test.csv:{i}" for i in range(1, 6)] + \
        [f"test.npz[{i}]" for i in range(7)]
    import keras

    probabilities = keras.saving.load_model(image_run / "model.keras", safe_mode=True).predict(test.x[:12], verbose=0)
    names = json.loads((image_run / "dataset.json").read_text())["class_names"]
    assert [r["predicted"] for r in written] == [names[i] for i in probabilities.argmax(axis=1)]
    got = np.array([[float(r[name]) for name in names] for r in written])
    np.testing.assert_allclose(got, probabilities, rtol=1e-5, atol=1e-6)

    np.savez(tmp_path / "wrong.npz", x=np.zeros((2, 7, 7)))
    wrong = invoke("predict", image_run, tmp_path / "wrong.npz")
    assert wrong.exit_code == 1
    assert wrong.stderr == (f"error: {tmp_path / 'wrong.npz'}[x]: arrays of shape (2, 7, 7) do not fit the model's "
                            "input (8, 8) (give examples of shape (8, 8) (or rows of 64 values))\n")
    (tmp_path / "notes.txt").write_text("hello")
    unknown = invoke("predict", image_run, tmp_path / "notes.txt")
    assert unknown.exit_code == 1
    assert unknown.stderr == (f"error: cannot read '{tmp_path / 'notes.txt'}': unknown kind of file (give image "
                              "files (.png, .jpg, .jpeg, ...), a .csv, or an .npz/.npy)\n")


def test_plot_redraws_while_training_and_after(image_run: Path, tmp_path: Path):
    run = tmp_path / image_run.name
    shutil.copytree(image_run, run)
    shutil.rmtree(run / "plots")
    status = json.loads((run / "status.json").read_text())
    status.update(state="running", pid=os.getpid())  # as if this process were still training it
    (run / "status.json").write_text(json.dumps(status))
    during = invoke("plot", run)
    assert during.exit_code == 0, during.output
    assert during.stdout.splitlines() == [f"wrote {run / 'plots' / 'loss.png'}",
                                          f"wrote {run / 'plots' / 'accuracy.png'}"]
    runs.write_status(run, "finished")
    after = invoke("plot", run)
    assert after.exit_code == 0, after.output
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["accuracy.png", "confusion_matrix.png", "loss.png",
                                                                 "misclassified.png"]
    assert all(png_size(p)[0] >= 300 for p in (run / "plots").iterdir())


def test_resume_keeps_best_keras_tensorboard_and_plots_whole(tmp_path: Path, write_config):
    import keras

    from dltrain import data
    from dltrain.load import load_config

    config = write_config(SYNTHETIC.replace("epochs: 2", "epochs: 4"))
    short = invoke("train", config, "--set", "training.epochs=2", "--output-dir", tmp_path / "out", "--no-progress")
    assert short.exit_code == 0, short.output
    run = run_folder(short.stdout)
    drawn = (run / "plots" / "loss.png").stat().st_mtime_ns
    resumed = invoke("train", config, "--resume", run, "--force", "--no-progress")
    assert resumed.exit_code == 0, resumed.output
    rows = history.read_history(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    # best.keras holds the epoch with the lowest val_loss of all four, before or after the resume.
    loaded = load_config(run / "config.yaml")
    val = data.load(loaded.config.dataset, loaded.config.seed).val
    best = keras.saving.load_model(run / "best.keras", safe_mode=True)
    scored = best.evaluate(val.x, val.y, batch_size=32, return_dict=True, verbose=0)
    assert scored["loss"] == pytest.approx(min(r["val_loss"] for r in rows), rel=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard" / "train"))
    events.Reload()
    assert [e.step for e in events.Tensors("epoch_loss")] == [0, 1, 2, 3]
    assert (run / "overrides.txt").read_text().startswith("training.epochs=2\n")
    env = json.loads((run / "env.json").read_text())
    assert len(env["resumes"]) == 1 and env["resumes"][0]["seed"] == env["seed"]
    assert (run / "plots" / "loss.png").stat().st_mtime_ns > drawn  # redrawn from all four epochs
    assert png_size(run / "plots" / "loss.png")[0] >= 300


def test_env_json_names_the_git_commit_of_the_configs_repository(tmp_path: Path):
    from dltrain.runs.envinfo import git_commit

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "c.yaml").write_text("name: a\n")
    subprocess.run([*git, "add", "c.yaml"], check=True)
    subprocess.run([*git, "commit", "-qm", "c"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_commit(tmp_path) == {"commit": head, "dirty": False, "repository": str(tmp_path.resolve())}
    (tmp_path / "c.yaml").write_text("name: b\n")
    assert git_commit(tmp_path)["dirty"] is True


def test_cli_start_up_imports_no_tensorflow_matplotlib_or_mlflow():
    code = ("import sys; from dltrain.cli import app; "
            "print([m for m in ('tensorflow', 'keras', 'matplotlib', 'mlflow', 'PIL') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


MLFLOW = SYNTHETIC + """\
tracking:
  mlflow:
    tracking_uri: sqlite:///DB
    experiment_name: tiny-experiments
    artifact_location: ARTIFACTS
"""


def mlflow_config(tmp_path: Path) -> str:
    return MLFLOW.replace("DB", str(tmp_path / "mlflow.db")).replace("ARTIFACTS", str(tmp_path / "artifacts"))


def test_mlflow_logs_params_metrics_and_artifacts(tmp_path: Path, write_config):
    pytest.importorskip("mlflow", reason="MLflow is in the test extra: pip install -e '.[test]'")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = write_config(mlflow_config(tmp_path))
    result = invoke("train", config, "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    run = run_folder(result.stdout)

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("tiny-experiments")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == run.name
    assert json.loads((run / "mlflow.json").read_text())["run_id"] == found.info.run_id
    params = found.data.params
    assert params["optimizer.Adam.learning_rate"] == "0.01" and params["training.epochs"] == "2"
    assert params["model.layers.0.Dense.units"] == "16" and params["seed"] == "7"
    assert params["tracking.mlflow.experiment_name"] == "tiny-experiments" and params["dataset.input_shape"] == "[8]"
    rows = history.read_history(run)
    logged = client.get_metric_history(found.info.run_id, "val_loss")
    assert [(m.step, m.value) for m in logged] == [(int(r["epoch"]), pytest.approx(r["val_loss"])) for r in rows]
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert found.data.metrics["test_accuracy"] == pytest.approx(test["accuracy"])
    artifacts = {a.path for a in client.list_artifacts(found.info.run_id)}
    assert artifacts >= {"model.keras", "best.keras", "config.yaml", "history.csv", "metrics.json", "env.json",
                         "plots"}
    plots = {a.path for a in client.list_artifacts(found.info.run_id, "plots")}
    assert plots == {"plots/loss.png", "plots/accuracy.png", "plots/confusion_matrix.png"}
    downloaded = client.download_artifacts(found.info.run_id, "model.keras", str(tmp_path / "dl"))
    assert Path(downloaded).read_bytes() == (run / "model.keras").read_bytes()

    # Training the run longer continues the same MLflow run.
    longer = invoke("train", config, "--resume", run, "--set", "training.epochs=3", "--force", "--no-progress")
    assert longer.exit_code == 0, longer.output
    (again,) = client.search_runs([experiment.experiment_id])
    assert again.info.run_id == found.info.run_id and again.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(found.info.run_id, "val_loss")] == [1, 2, 3]


def test_mlflow_missing_is_one_clear_line_and_no_run_folder(tmp_path: Path, write_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails as if it were not installed
    config = write_config(mlflow_config(tmp_path))
    result = invoke("train", config, "--output-dir", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    assert result.stderr == (f"error: {config}:23:3: tracking.mlflow: MLflow is not installed "
                             "(pip install 'dltrain[mlflow]', or remove tracking.mlflow)\n")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
