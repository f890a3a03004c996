"""`format: timeseries`: windows over the rows of a CSV or parquet table, in time order.

The arithmetic is keras.utils.timeseries_dataset_from_array's (`sequence_length`, `sampling_rate`,
`sequence_stride`): a window starting at row s holds rows s, s + rate, ..., s + (length - 1) * rate, and its
label is the label columns' row `horizon` rows after the window's last row. The rows are split in time order
(train, then validation, then test: the last rows) before any window is cut, so no window and no label crosses
a boundary. The windows are held in memory, so training shuffles them in the (seed, epoch) order like any
array. One `Normalization` layer in the model, adapted on the training part's rows only, scales the inputs.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dltrain.config import DEFAULT_TEST_SPLIT, DatasetConfig, did_you_mean
from dltrain.data.columns import Column, is_number, open_parquet, read_columns
from dltrain.data.types import DatasetInfo, Source, Split
from dltrain.errors import DataError

INPUT_NAME = "series"


def _listed(names: list[str]) -> str:
    return ", ".join(names)


def labels_of(config: DatasetConfig) -> list[str]:
    """The label columns, as a list."""
    label = config.label
    return [label] if isinstance(label, str) else list(label or [])


def table_format(path: str | Path) -> str:
    """"parquet" for a .parquet (.pq) file, else "csv"."""
    return "parquet" if Path(path).suffix.lower() in (".parquet", ".pq") else "csv"


def _header(path: str, fmt: str) -> dict[str, bool]:
    """Each column's name and whether it holds numbers, read off the header and the first row (CSV) or the
    schema (parquet): what `dltrain check` needs, without reading the table."""
    if fmt == "parquet":
        pa, schema = open_parquet(path, schema_only=True)
        return {field.name: pa.types.is_integer(field.type) or pa.types.is_floating(field.type)
                or pa.types.is_boolean(field.type) for field in schema}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = (row for row in csv.reader(handle) if any(cell.strip() for cell in row))
            header = next(rows, None)
            first = next(rows, None)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}", key="dataset.path",
                        hint="dataset.path names a CSV file") from None
    except (UnicodeDecodeError, csv.Error):
        return {}  # the full read says what is wrong, and where
    if header is None or first is None:
        return {}
    return {name.strip(): is_number(cell) for name, cell in zip(header, first)}


def _pick(path: str, columns: dict[str, Any], names: list[str], key: str) -> None:
    for name in names:
        if name not in columns:
            raise DataError(f"{path} has no column '{name}'; its columns are: {_listed(list(columns))}", key=key,
                            hint=did_you_mean(name, list(columns)) or "name one of its columns")


def _columns(config: DatasetConfig, numeric: dict[str, bool]) -> tuple[list[str], list[str]]:
    """(feature columns, label columns) as the config names them; bad names are errors."""
    path = str(config.path)
    labels = labels_of(config)
    if not labels:
        raise DataError(f"which column of {path} is to be forecast? its columns are: {_listed(list(numeric))}",
                        key="dataset.label", hint="add 'label: <column>' under 'dataset'")
    _pick(path, numeric, labels, "dataset.label")
    if config.features is None:
        # Every numeric column, the label's own past included (the weather example's inputs).
        features = [name for name, holds_numbers in numeric.items() if holds_numbers]
    else:
        features = [config.features] if isinstance(config.features, str) else list(config.features)
        _pick(path, numeric, features, "dataset.features")
        twice = next((name for name in features if features.count(name) > 1), None)
        if twice is not None:
            raise DataError(f"'{twice}' is listed twice", key="dataset.features", hint="list each column once")
    if not features:
        raise DataError(f"{path} has no numeric column to read windows from", key="dataset.features",
                        hint="name the input columns in 'features'")
    for name, key in [*((n, "dataset.features") for n in features), *((n, "dataset.label") for n in labels)]:
        if not numeric[name]:
            raise DataError(f"{path}: column '{name}' does not hold numbers", key=key,
                            hint="a time series reads numeric columns only; leave it out")
    return features, labels


def span(config: DatasetConfig) -> int:
    """How many rows one window and its label cover, from the window's first row to the label's."""
    return (config.sequence_length - 1) * (config.sampling_rate or 1) + config.horizon + 1


def series_facts(config: DatasetConfig, features: list[str], labels: list[str]) -> dict[str, Any]:
    """What predict needs to cut windows from new rows (stored in dataset.json)."""
    return {"features": features, "labels": labels, "sequence_length": config.sequence_length,
            "sampling_rate": config.sampling_rate or 1, "horizon": config.horizon}


def _numeric(path: str) -> dict[str, bool]:
    """Each column and whether it holds numbers, by the header and the first row: training and `check` pick the
    same default features, and a later cell that is not a number is an error naming its line."""
    numeric = _header(path, table_format(path))
    if not numeric:  # empty, or not readable as a table: the full read gives the error with its line
        numeric = {column.name: column.numeric for column in read_columns(path, table_format(path))}
    return numeric


def describe(config: DatasetConfig) -> DatasetInfo:
    """The window shape from the header and the first row (or the parquet schema); the table is not read."""
    path = str(config.path)
    features, labels = _columns(config, _numeric(path))
    return DatasetInfo(Path(path).name, (config.sequence_length, len(features)), None, None,
                       series=series_facts(config, features, labels))


def windows(rows: np.ndarray, labels: np.ndarray, sequence_length: int, sampling_rate: int = 1,
            sequence_stride: int = 1, horizon: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every window of `rows` (timeseries_dataset_from_array's) whose label row, `horizon` rows after its
    last row, is still in `rows`: (windows, their labels)."""
    reach = (sequence_length - 1) * sampling_rate
    last_start = len(rows) - 1 - horizon - reach
    starts = np.arange(0, last_start + 1, sequence_stride) if last_start >= 0 else np.zeros(0, np.int64)
    index = starts[:, None] + np.arange(0, sequence_length * sampling_rate, sampling_rate)[None, :]
    return rows[index], labels[starts + reach + horizon]


def time_parts(rows: int, validation_split: float, test_split: float) -> tuple[int, int, int]:
    """How many rows the train, validation and test parts hold: the test part is the last `test_split` of
    the rows, validation the `validation_split` of the rest just before it (as the seeded splits count)."""
    test = int(round(rows * test_split))
    val = int(round((rows - test) * validation_split))
    return rows - test - val, val, test


def _numbers(path: str, columns: dict[str, Column], names: list[str], key: str | None) -> np.ndarray:
    return np.stack([columns[name].numbers(path, key) for name in names], axis=1).astype(np.float32)


def read(config: DatasetConfig, seed: int) -> Source:
    """The table's rows split in time order, each part cut into windows; the normalisation is the training
    part's."""
    path = str(config.path)
    columns = {column.name: column for column in read_columns(path, table_format(path))}
    features, labels = _columns(config, _numeric(path))
    x_rows = _numbers(path, columns, features, "dataset.features")
    y_rows = _numbers(path, columns, labels, "dataset.label")
    if len(labels) == 1:
        y_rows = y_rows[:, 0]
    fraction = config.test_split or DEFAULT_TEST_SPLIT
    sizes = time_parts(len(x_rows), config.validation_split, fraction)
    bounds = np.cumsum((0, *sizes))
    settings = (config.sequence_length, config.sampling_rate or 1, config.sequence_stride or 1, config.horizon)
    parts = []
    for name, start, stop in zip(("training", "validation", "test"), bounds[:-1], bounds[1:]):
        x, y = windows(x_rows[start:stop], y_rows[start:stop], *settings)
        if not len(x) and (name != "validation" or stop > start):
            need = span(config)
            raise DataError(f"the {name} part of {path} has {stop - start} rows; one window and its label need "
                            f"{need}", key="dataset.sequence_length" if name == "training" else
                            f"dataset.{'validation' if name == 'validation' else 'test'}_split",
                            hint=f"give the {name} part more rows, or shorten sequence_length, sampling_rate or "
                                 "horizon")
        parts.append(Split(x, y) if len(x) else None)
    train, val, test = parts
    info = DatasetInfo(Path(path).name, (config.sequence_length, len(features)), None, None,
                       series=series_facts(config, features, labels))
    info.series["rows"] = {"train": int(sizes[0]), "validation": int(sizes[1]), "test": int(sizes[2])}
    if config.test_split is None:
        info.test_split = fraction
        info.notes.append(f"the last {fraction:g} of the rows are the test part (set dataset.test_split to choose)")
    return Source(train, test, info, functools.partial(preprocessing, rows=x_rows[:sizes[0]],
                                                       shape=info.input_shape), val=val, ordered=True)


def preprocessing(train: Split, *, rows: np.ndarray, shape: tuple[int, int]) -> tuple[Any, Any]:
    """The raw window input and a Normalization adapted on the training part's rows (not its windows: a
    row in many windows would count many times)."""
    import keras

    raw = keras.Input(shape=shape, name=INPUT_NAME, dtype="float32")
    normalization = keras.layers.Normalization(axis=-1, name="series_normalization")
    normalization.adapt(rows)
    return raw, normalization(raw)


def file_windows(path: Path, series: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Every full window of a CSV or parquet file of rows (stride 1, so each row that ends a window gets a
    forecast), by the run's feature columns; and each window's name: the file and the line of its last row."""
    try:
        columns = {column.name: column for column in read_columns(str(path), table_format(path))}
        features = series["features"]
        for name in features:
            if name not in columns:
                raise DataError(f"{path} has no column '{name}', an input of the model; its columns are: "
                                f"{_listed(list(columns))}",
                                hint=did_you_mean(name, list(columns)) or f"the model reads {_listed(features)}")
        rows = _numbers(str(path), columns, features, None)
    except DataError as error:
        error.key = None  # the file is the command's input, not a dataset key
        raise
    length, rate = series["sequence_length"], series["sampling_rate"]
    reach = (length - 1) * rate
    if len(rows) <= reach:
        raise DataError(f"{path} has {len(rows)} rows; one window needs {reach + 1}",
                        hint=f"give at least {reach + 1} rows (sequence_length {length}, sampling_rate {rate})")
    x, _ = windows(rows, np.arange(len(rows)), length, rate, 1, horizon=0)
    where: Callable[[int], str] = next(iter(columns.values())).where
    return x, [f"{path.name}:{where(i + reach).split()[-1]}" for i in range(len(x))]
