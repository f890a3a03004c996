"""`format: timeseries`: windows over a CSV's rows, split in time order, checked against Keras's own windows;
the shipped weather LSTM trained, evaluated, resumed and asked for forecasts on a series the tests write."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import CONFIGS, cli
from dltrain import data
from dltrain.config import DatasetConfig
from dltrain.data import timeseries
from dltrain.errors import DataError

# The shipped config's columns: the temperature is a sine with noise, the other columns are noise.
COLUMNS = ["p (mbar)", "T (degC)", "VPmax (mbar)", "VPdef (mbar)", "sh (g/kg)", "rho (g/m**3)", "wv (m/s)"]
ROWS = 400
SMALL = ["--set", "dataset.sequence_length=12", "--set", "dataset.sampling_rate=1", "--set",
         "dataset.sequence_stride=1", "--set", "dataset.horizon=3", "--set", "model.layers[0].LSTM.units=8",
         "--set", "optimizer.Adam.learning_rate=0.01", "--set", "training.batch_size=32", "--set",
         "training.callbacks=[]"]


def weather(path: Path, rows: int = ROWS, seed: int = 0) -> Path:
    """A CSV like the Jena table: a date column, then numeric columns; T (degC) follows a sine of period 25."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    columns = rng.normal(size=(rows, len(COLUMNS))) * 3 + 100
    columns[:, 1] = np.sin(t * 2 * np.pi / 25) + 0.1 * rng.normal(size=rows)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Date Time", *COLUMNS])
        for i, row in enumerate(columns):
            writer.writerow([f"day {i}", *(f"{v:.5f}" for v in row)])
    return path


def counting(path: Path, rows: int) -> Path:
    """A CSV whose `a` column is the row number and `b` ten times it: each window shows where it came from."""
    path.write_text("a,b,name\n" + "".join(f"{i},{10 * i},r{i}\n" for i in range(rows)))
    return path


def keras_windows(rows: np.ndarray, labels: np.ndarray, length: int, rate: int, stride: int, horizon: int):
    """Keras's windows of `rows` whose target is the label `horizon` rows after each window's last row."""
    import keras

    reach = (length - 1) * rate
    n = len(rows) - horizon
    targets = np.full(n, np.nan, np.float32)
    targets[: n - reach] = labels[reach + horizon:]
    batches = list(keras.utils.timeseries_dataset_from_array(
        rows[:n], targets, sequence_length=length, sampling_rate=rate, sequence_stride=stride, batch_size=10_000,
        shuffle=False))
    if not batches:
        return np.zeros((0, length, rows.shape[1]), np.float32), np.zeros(0, np.float32)
    return batches[0][0].numpy(), batches[0][1].numpy()


@pytest.mark.parametrize("length, rate, stride, horizon", [(5, 1, 1, 1), (4, 2, 3, 2), (3, 3, 1, 5), (6, 1, 2, 0)])
def test_windows_are_keras_windows_labelled_horizon_rows_after_their_end(length, rate, stride, horizon):
    rows = np.arange(100, dtype=np.float32).reshape(50, 2)
    labels = np.arange(50, dtype=np.float32) * 10
    x, y = timeseries.windows(rows, labels, length, rate, stride, horizon)
    kx, ky = keras_windows(rows, labels, length, rate, stride, horizon)
    assert x.shape == kx.shape and len(x) > 0
    np.testing.assert_array_equal(x, kx)
    np.testing.assert_array_equal(y, ky)
    # the label is row (last row of the window + horizon)
    np.testing.assert_array_equal(y, (x[:, -1, 0] / 2 + horizon) * 10)


def test_splits_are_in_time_order_and_no_window_crosses_a_boundary(tmp_path: Path):
    path = counting(tmp_path / "count.csv", 200)
    config = DatasetConfig(path=str(path), format="timeseries", features=["a"], label="b", sequence_length=6,
                           sampling_rate=2, sequence_stride=3, horizon=4, validation_split=0.25, test_split=0.2)
    splits = data.load(config, seed=5)
    # 200 rows: test = the last 40, validation = 40 of the other 160, just before them; training = the first 120
    parts = {"train": (0, 120), "val": (120, 160), "test": (160, 200)}
    for name, (start, stop) in parts.items():
        split = getattr(splits, name)
        rows = split.x[:, :, 0]
        assert rows.min() >= start and rows.max() < stop
        assert (split.y / 10).min() >= start and (split.y / 10).max() < stop  # the label rows too
        np.testing.assert_array_equal(split.y, (rows[:, -1] + 4) * 10)
        all_rows = np.arange(start, stop, dtype=np.float32)
        kx, ky = keras_windows(all_rows[:, None], all_rows * 10, 6, 2, 3, 4)
        np.testing.assert_array_equal(split.x, kx)
        np.testing.assert_array_equal(split.y, ky)
    assert splits.info.sizes == {"train": len(splits.train), "validation": len(splits.val), "test": len(splits.test)}
    assert splits.info.input_shape == (6, 1)
    # the same windows for any seed: the order is time's
    np.testing.assert_array_equal(data.load(config, seed=9).train.x, splits.train.x)


def test_defaults_every_numeric_column_and_check_reads_only_the_header(tmp_path: Path):
    path = counting(tmp_path / "count.csv", 60)
    # a broken row far below the header: describe (dltrain check) never reads it; the training read names it
    path.write_text(path.read_text() + "oops,1,r60\n")
    config = DatasetConfig(path=str(path), format="timeseries", label="b", sequence_length=4)
    info = data.describe(config)
    assert info.input_shape == (4, 2) and info.series["features"] == ["a", "b"] and info.task == "regression"
    with pytest.raises(DataError) as error:
        data.load(config, 0)
    assert str(error.value) == f"dataset.features: {path} line 62: column 'a' holds 'oops', not a number " \
                               "(fix the value or remove the row)"


def test_parquet_table_and_several_label_columns(tmp_path: Path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "series.parquet"
    pq.write_table(pa.table({"when": [f"d{i}" for i in range(100)], "a": np.arange(100, dtype=np.int64),
                             "b": np.arange(100) * 10.0}), path)
    config = DatasetConfig(path=str(path), format="timeseries", label=["a", "b"], sequence_length=5, horizon=2)
    assert data.describe(config).series["features"] == ["a", "b"]  # the text column is left out
    splits = data.load(config, 0)
    # the default test part: the last 0.2 of the rows; validation: 0.1 of the 80 before them
    assert splits.info.sizes == {"train": 72 - 6, "validation": 8 - 6, "test": 20 - 6}
    assert splits.info.notes == ["the last 0.2 of the rows are the test part (set dataset.test_split to choose)"]
    np.testing.assert_array_equal(splits.train.y[:2], [[6, 60], [7, 70]])  # both labels, 2 rows after the window


@pytest.mark.parametrize("keys, message", [
    ({"label": "nam"}, "dataset.label: {path} has no column 'nam'; its columns are: a, b, name (did you mean 'name'?)"),
    ({"label": "b", "features": ["a", "name"]},
     "dataset.features: {path}: column 'name' does not hold numbers (a time series reads numeric columns only; "
     "leave it out)"),
    ({"label": "b", "sequence_length": 30, "test_split": 0.2, "validation_split": 0.0},
     "dataset.test_split: the test part of {path} has 12 rows; one window and its label need 31 (give the test "
     "part more rows, or shorten sequence_length, sampling_rate or horizon)"),
])
def test_data_errors_name_the_file_and_key(tmp_path: Path, keys, message):
    path = counting(tmp_path / "count.csv", 60)
    with pytest.raises(DataError) as error:
        data.load(DatasetConfig(path=str(path), format="timeseries", **{"sequence_length": 4, **keys}), 0)
    assert str(error.value) == message.format(path=path)


@pytest.mark.parametrize("lines, expected", [
    ("  label: b\n", "{cfg}:3:3: dataset.format: a timeseries source needs sequence_length (rows per window) "
                     "(add e.g. 'sequence_length: 24' under 'dataset')"),
    ("  label: b\n  sequence_length: 4\n  horizon: -1\n",
     "{cfg}:6:3: dataset.horizon: expected a number >= 0, got -1"),
    ("  label: b\n  sequence_length: 4\n  label_separator: '|'\n",
     "{cfg}:6:3: dataset.label_separator: 'label_separator' does not apply to 'timeseries' sources (remove it; "
     "it applies to: csv, parquet)"),
])
def test_config_errors_point_at_their_line(tmp_path: Path, lines, expected):
    path = counting(tmp_path / "count.csv", 60)
    cfg = tmp_path / "series.yaml"
    cfg.write_text(f"dataset:\n  path: {path}\n  format: timeseries\n{lines}"
                   "model:\n  layers: [Flatten, {Dense: {units: 1}}]\nloss: mse\n")
    result = cli("check", cfg)
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: " + expected.format(cfg=cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The shipped weather LSTM, 2 epochs on a 400-row series; then the same run stopped after 1 and resumed."""
    root = tmp_path_factory.mktemp("weather")
    path = weather(root / "weather.csv")
    base = [CONFIGS / "weather_lstm.yaml", "--set", f"dataset.path={path}", *SMALL, "--no-progress"]
    full = cli("train", *base, "--set", "training.epochs=2", "--output-dir", root / "full")
    assert full.exit_code == 0, full.output
    short = cli("train", *base, "--set", "training.epochs=1", "--output-dir", root / "short")
    assert short.exit_code == 0, short.output
    run = lambda result: Path(re.search(r"^run folder: (.+)$", result.stdout, re.M).group(1))  # noqa: E731
    resumed = cli("train", *base, "--set", "training.epochs=2", "--resume", run(short), "--force")
    assert resumed.exit_code == 0, resumed.output
    return {"root": root, "csv": path, "run": run(full), "resumed": run(short)}


def test_weather_lstm_learns_and_normalises_with_the_training_rows_only(trained: dict):
    import keras

    run = trained["run"]
    metrics = json.loads((run / "metrics.json").read_text())
    table = np.loadtxt(trained["csv"], delimiter=",", skiprows=1, usecols=range(1, 8), dtype=np.float64)
    # 400 rows: test = the last 40, validation = 72 (0.2 of 360) before them, training = the first 288
    train_rows, test_rows = table[:288], table[360:]
    naive = float(np.mean((test_rows[14:, 1] - train_rows[:, 1].mean()) ** 2))  # the training mean as forecast
    print(f"weather LSTM test mse {metrics['test']['loss']:.4f} (mae {metrics['test']['mean_absolute_error']:.4f}); "
          f"predicting the training mean: mse {naive:.4f}")
    assert metrics["test"]["loss"] < 0.5 * naive
    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    normalization = model.get_layer("series_normalization")
    np.testing.assert_allclose(np.ravel(normalization.mean), train_rows.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(normalization.variance), train_rows.var(axis=0), rtol=1e-4)
    described = json.loads((run / "dataset.json").read_text())
    assert described["series"]["labels"] == ["T (degC)"] and described["sizes"] == {
        "train": 288 - 14, "validation": 72 - 14, "test": 40 - 14}
    assert (run / "plots" / "forecast.png").stat().st_size > 10_000


def test_evaluate_repeats_the_test_metrics_and_resume_is_bit_identical(trained: dict):
    import keras

    run = trained["run"]
    result = cli("evaluate", run)
    assert result.exit_code == 0, result.output
    test = json.loads((run / "metrics.json").read_text())["test"]
    assert re.search(rf"│ test\s+│ {test['loss']:.4f}\s+│ {test['mean_absolute_error']:.4f}\s+│", result.stdout)
    a = keras.saving.load_model(run / "model.keras", safe_mode=True).get_weights()
    b = keras.saving.load_model(trained["resumed"] / "model.keras", safe_mode=True).get_weights()
    assert max(float(np.abs(x - y).max()) for x, y in zip(a, b)) == 0.0


def test_predict_gives_a_forecast_for_every_full_window_of_a_csv(trained: dict, tmp_path: Path):
    import keras

    rows = weather(tmp_path / "recent.csv", rows=20, seed=4)
    result = cli("predict", trained["run"], rows, "--out", tmp_path / "forecasts.csv")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"wrote 9 predictions to {tmp_path / 'forecasts.csv'}"
    lines = list(csv.reader((tmp_path / "forecasts.csv").read_text().splitlines()))
    # 20 rows, windows of 12: the windows end on the rows of lines 13..21 (the header is line 1)
    assert lines[0][:2] == ["input", "T (degC) +3"] and [line[0] for line in lines[1:]] == [
        f"recent.csv:{i}" for i in range(13, 22)]
    values = np.loadtxt(rows, delimiter=",", skiprows=1, usecols=range(1, 8), dtype=np.float32)
    model = keras.saving.load_model(trained["run"] / "model.keras", safe_mode=True)
    expected = model.predict(np.stack([values[i:i + 12] for i in range(9)]), verbose=0)[:, 0]
    np.testing.assert_allclose([float(line[1]) for line in lines[1:]], expected, rtol=1e-4, atol=1e-5)
    short = weather(tmp_path / "short.csv", rows=5)
    refused = cli("predict", trained["run"], short)
    assert refused.exit_code == 1
    assert refused.stderr.strip() == (f"error: {short} has 5 rows; one window needs 12 (give at least 12 rows "
                                      "(sequence_length 12, sampling_rate 1))")
