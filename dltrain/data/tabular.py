"""`csv` and `parquet` tables: one column holds the labels, the others are features (numbers or text).

Numeric columns pass through one `Normalization` layer adapted on the training rows and text columns
through a one-hot `StringLookup` each; both live in the model, so the saved model takes raw rows.
CSV is read with the standard library; parquet needs pyarrow (`pip install 'dltrain[parquet]'`).
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dltrain.config import DatasetConfig, did_you_mean
from dltrain.data.types import DatasetInfo, Source, Split
from dltrain.errors import DataError

_INTEGER = re.compile(r"^[+-]?\d+$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
# A text column with more distinct values than this (and than half its rows) is probably an id or free
# text; one-hot encoding it makes the model wide and the note says so.
_WIDE_VOCABULARY = 50
# Inferred classification with more integer classes than this is likely a regression target (a count).
_MANY_CLASSES = 20


@dataclass
class Column:
    """One column of a table: its cells as text (CSV, parquet text) or as numbers (typed parquet columns)."""

    name: str
    # A str array ("" is an empty cell), or float64 for a typed numeric parquet column (NaN for a null).
    values: np.ndarray
    # Where row i is in the file, for messages: "line 7" (CSV) or "row 6" (parquet).
    where: Callable[[int], str]
    # A typed parquet column of integers (or booleans).
    typed_integer: bool = False
    # A parquet type that is neither numbers nor text (timestamps, lists, ...): its name.
    unsupported: str | None = None

    @functools.cached_property
    def numeric(self) -> bool:
        """Whether every non-empty cell is a number (a typed column: whether its type is numeric)."""
        if self.values.dtype.kind == "f":
            return True
        try:
            self.values[self.values != ""].astype(np.float64)
        except ValueError:
            return False
        return True

    @functools.cached_property
    def integer(self) -> bool:
        """Whether every cell is an integer written without a decimal point (or has an integer type)."""
        if self.values.dtype.kind == "f":
            return self.typed_integer
        return all(_INTEGER.match(cell) for cell in self.values)

    def numbers(self, path: str, key: str | None) -> np.ndarray:
        """The column as float64; an empty cell or a value that is not a finite number is an error."""
        values = self.values
        if values.dtype.kind != "f":
            empty = np.flatnonzero(values == "")
            if len(empty):
                raise DataError(f"{path} {self.where(empty[0])}: column '{self.name}' is empty", key=key,
                                hint="fill in a number or remove the row; only a text column may have empty "
                                     "cells (they become a category of their own)")
            try:
                values = values.astype(np.float64)
            except ValueError:
                bad = next(i for i, cell in enumerate(values) if not _is_number(cell))
                raise DataError(f"{path} {self.where(bad)}: column '{self.name}' holds '{values[bad]}', "
                                "not a number", key=key, hint="fix the value or remove the row") from None
        bad_values = np.flatnonzero(~np.isfinite(values))
        if len(bad_values):
            i = bad_values[0]
            shown = "an empty cell" if np.isnan(values[i]) and self.values.dtype.kind == "f" else f"'{self.values[i]}'"
            raise DataError(f"{path} {self.where(i)}: column '{self.name}' holds {shown}, not a finite number",
                            key=key, hint="fill in a number or remove the row")
        return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def input_name(column: str) -> str:
    """The Keras input name of a column: letters, digits and '_' (TensorFlow's signature names allow no more)."""
    name = _NOT_NAME.sub("_", column.strip())
    return name if name[:1].isalnum() else f"c{name}"


def _line(numbers: list[int]) -> Callable[[int], str]:
    return lambda i: f"line {numbers[i]}"


def _row(i: int) -> str:
    return f"row {i + 1}"


def read_csv(path: str) -> list[Column]:
    """A CSV's columns as text cells (stripped); the first line is the header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header: list[str] | None = None
            rows: list[list[str]] = []
            lines: list[int] = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank lines
                if header is None:
                    header = [cell.strip() for cell in row]
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path} line {reader.line_num} has {len(row)} cells, the header has "
                                    f"{len(header)}", key="dataset.path",
                                    hint="every row needs one cell per column; quote cells that contain commas")
                rows.append(row)
                lines.append(reader.line_num)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}", key="dataset.path",
                        hint="dataset.path names a CSV file") from None
    except UnicodeDecodeError as error:
        # error.start counts from the decoder's chunk, not the file: no position is better than a wrong one.
        raise DataError(f"{path} is not UTF-8 text ({error.reason})", key="dataset.path",
                        hint="save the file as UTF-8") from None
    except csv.Error as error:
        raise DataError(f"{path} line {reader.line_num}: {error}", key="dataset.path",
                        hint="check the file is a comma-separated table") from None
    if header is None:
        raise DataError(f"{path} is empty", key="dataset.path",
                        hint="a CSV starts with a header row naming the columns, then one row per example")
    if not rows:
        raise DataError(f"{path} has a header but no rows", key="dataset.path",
                        hint="add one row per example under the header")
    cells = np.array(rows, dtype=str)
    where = _line(lines)
    return [Column(name, np.char.strip(cells[:, j]), where) for j, name in enumerate(header)]


def read_parquet(path: str) -> list[Column]:
    """A parquet file's columns: numbers as float64 (nulls NaN), text as str ("" for nulls)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet files needs pyarrow, which is not installed", key="dataset.format",
                        hint="pip install 'dltrain[parquet]' (or: pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"cannot read {path}: {error}", key="dataset.path",
                        hint="check that it is a parquet file") from None
    if table.num_rows == 0:
        raise DataError(f"{path} has columns but no rows", key="dataset.path", hint="add one row per example")
    columns = []
    for name, chunks in zip(table.column_names, table.columns):
        kind = chunks.type
        if pa.types.is_dictionary(kind):
            chunks, kind = chunks.cast(kind.value_type), kind.value_type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
            column = Column(name, chunks.cast(pa.float64()).to_numpy(zero_copy_only=False), _row,
                            typed_integer=not pa.types.is_floating(kind))
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            column = Column(name, np.array([v or "" for v in chunks.to_pylist()], dtype=str), _row)
        else:
            column = Column(name, np.array([], dtype=str), _row, unsupported=str(kind))
        columns.append(column)
    return columns


@functools.lru_cache(maxsize=2)
def _cached(path: str, fmt: str, stamp: tuple[int, int]) -> list[Column]:
    return read_parquet(path) if fmt == "parquet" else read_csv(path)


def read_columns(path: str, fmt: str) -> list[Column]:
    """The columns of a CSV or parquet file (read once for `describe` and `read` while the file is unchanged)."""
    stat = Path(path).stat()
    return _cached(path, fmt, (stat.st_mtime_ns, stat.st_size))


@dataclass
class Table:
    """What a config makes of a file: feature columns (numeric or text), the label column and the task."""

    path: str
    features: list[Column]
    names: list[str]  # Keras input names, one per feature column
    numeric: list[bool]
    label: Column
    task: str


def _listed(columns: list[str]) -> str:
    return ", ".join(columns)


def _pick(path: str, columns: dict[str, Column], name: str, key: str) -> Column:
    if name not in columns:
        raise DataError(f"{path} has no column '{name}'; its columns are: {_listed(list(columns))}", key=key,
                        hint=did_you_mean(name, list(columns)) or "name one of its columns")
    return columns[name]


def table(config: DatasetConfig) -> Table:
    """The file's columns as the config names them, with their types and the task; bad names are errors."""
    path = str(config.path)
    columns_list = read_columns(path, config.kind)
    columns: dict[str, Column] = {}
    for column in columns_list:
        if column.name in columns:
            raise DataError(f"{path} names the column '{column.name}' twice", key="dataset.path",
                            hint="give every column its own name in the header")
        columns[column.name] = column
    if not config.label:
        hint = "add 'label: <column>' under 'dataset'"
        if all(_is_number(name) for name in columns):
            hint = "the first line must be a header naming the columns; this one holds numbers"
        raise DataError(f"which column of {path} holds the labels? its columns are: {_listed(list(columns))}",
                        key="dataset.label", hint=hint)
    label = _pick(path, columns, config.label, "dataset.label")
    if config.features is None:
        names = [name for name in columns if name != config.label]
    else:
        names = [config.features] if isinstance(config.features, str) else list(config.features)
        if config.label in names:
            raise DataError(f"'{config.label}' is the label column; it cannot also be a feature",
                            key="dataset.features", hint=f"remove '{config.label}' from features")
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise DataError(f"'{twice}' is listed twice", key="dataset.features", hint="list each column once")
    if not names:
        raise DataError(f"{path} has no columns besides the label '{config.label}'", key="dataset.features",
                        hint="a table needs at least one feature column")
    features = [_pick(path, columns, name, "dataset.features") for name in names]
    inputs: dict[str, str] = {}
    for column in features:
        if column.unsupported:
            raise DataError(f"{path}: column '{column.name}' has the type {column.unsupported}, which is neither "
                            "numbers nor text", key="dataset.features", hint="leave it out of features")
        name = input_name(column.name)
        if name in inputs:
            raise DataError(f"the columns '{inputs[name]}' and '{column.name}' both become the input name "
                            f"'{name}'", key="dataset.features",
                            hint="rename one of them (input names keep letters, digits and '_')")
        inputs[name] = column.name
    if label.unsupported:
        raise DataError(f"{path}: the label column '{label.name}' has the type {label.unsupported}",
                        key="dataset.label", hint="labels are numbers or text")
    if label.values.dtype.kind != "f":
        empty = np.flatnonzero(label.values == "")
        if len(empty):
            raise DataError(f"{path} {label.where(empty[0])}: the label column '{label.name}' is empty",
                            key="dataset.label", hint="every row needs a label; remove the unlabelled rows")
    task = config.task or ("regression" if label.numeric and not label.integer else "classification")
    return Table(path, features, list(inputs), [c.numeric for c in features], label, task)


def _labels(tab: Table) -> tuple[np.ndarray, list[str] | None]:
    """Labels as class indices and the class names (sorted distinct values), or float32 regression targets."""
    label, path = tab.label, tab.path
    if tab.task == "regression":
        if not label.numeric:
            bad = next(i for i, cell in enumerate(label.values) if cell and not _is_number(cell))
            raise DataError(f"{path} {label.where(bad)}: the label '{label.values[bad]}' in column "
                            f"'{label.name}' is not a number", key="dataset.label",
                            hint="task: regression needs numeric labels; use task: classification for classes")
        return label.numbers(path, "dataset.label").astype(np.float32), None
    if label.numeric:
        numbers = label.numbers(path, "dataset.label")
        distinct, y = np.unique(numbers, return_inverse=True)
        names = [str(int(v)) if v == int(v) else repr(float(v)) for v in distinct]
    else:
        distinct, y = np.unique(label.values, return_inverse=True)
        names = [str(v) for v in distinct]
    if len(names) < 2:
        raise DataError(f"the label column '{label.name}' holds one value ('{names[0]}'); classification needs "
                        "at least 2 classes", key="dataset.label",
                        hint="check the label column, or set task: regression")
    return y.astype(np.int64), names


def _vocabulary(column: Column) -> list[str]:
    """A text column's categories: its sorted distinct values (from the whole file, so `describe` knows
    the model's width without the seeded split; unseen values at prediction time map to the OOV slot)."""
    return [str(v) for v in np.unique(column.values)]


def _info(tab: Table, config: DatasetConfig, class_names: list[str] | None) -> DatasetInfo:
    width = 0
    notes = []
    for column, numeric in zip(tab.features, tab.numeric):
        if numeric:
            width += 1
            continue
        size = len(_vocabulary(column))
        width += size + 1  # + the out-of-vocabulary slot
        if size > max(_WIDE_VOCABULARY, len(column.values) // 2):
            notes.append(f"column '{column.name}' has {size} distinct values in {len(column.values)} rows: "
                         f"one-hot encoded it adds {size + 1} inputs (an id or free text? leave it out of "
                         "features)")
    if config.task is None and class_names and len(class_names) > _MANY_CLASSES and tab.label.numeric:
        notes.append(f"the label column '{tab.label.name}' holds {len(class_names)} distinct integers, trained "
                     "as classes; set task: regression if they are quantities")
    num_classes = len(class_names) if class_names else None
    return DatasetInfo(Path(tab.path).name, (width,), num_classes, class_names, features=list(tab.names),
                       notes=notes)


def describe(config: DatasetConfig) -> DatasetInfo:
    """Classes, feature names and the preprocessed width, from the file's header and values (no TensorFlow)."""
    tab = table(config)
    _, class_names = _labels(tab)
    return _info(tab, config, class_names)


def _features(tab: Table) -> dict[str, np.ndarray]:
    """One (rows, 1) array per feature column, named by its input: float32 numbers or str text."""
    x = {}
    for name, column, numeric in zip(tab.names, tab.features, tab.numeric):
        values = column.numbers(tab.path, "dataset.path").astype(np.float32) if numeric else column.values
        x[name] = values.reshape(-1, 1)
    return x


def read(config: DatasetConfig, seed: int) -> Source:
    """The table as one training split of named raw columns, with its preprocessing for the model."""
    tab = table(config)
    y, class_names = _labels(tab)
    info = _info(tab, config, class_names)
    vocabularies = {name: _vocabulary(column) for name, column, numeric in zip(tab.names, tab.features, tab.numeric)
                    if not numeric}
    numeric = [name for name, is_number in zip(tab.names, tab.numeric) if is_number]
    return Source(Split(_features(tab), y), None, info,
                  functools.partial(preprocessing, numeric=numeric, vocabularies=vocabularies, names=tab.names))


def preprocessing(train: Split, *, numeric: list[str], vocabularies: dict[str, list[str]],
                  names: list[str]) -> tuple[dict[str, Any], Any]:
    """Raw inputs, one per column; numbers normalized (adapted on `train`) and text one-hot encoded."""
    import keras

    inputs = {name: keras.Input(shape=(1,), name=name, dtype="float32" if name in numeric else "string")
              for name in names}
    parts = []
    if numeric:
        joined = inputs[numeric[0]] if len(numeric) == 1 else keras.layers.Concatenate(
            name="tabular_numbers")([inputs[name] for name in numeric])
        normalization = keras.layers.Normalization(name="tabular_normalization")
        normalization.adapt(np.concatenate([train.x[name] for name in numeric], axis=1))
        parts.append(normalization(joined))
    for name, vocabulary in vocabularies.items():
        lookup = keras.layers.StringLookup(vocabulary=vocabulary, output_mode="one_hot", name=f"tabular_{name}")
        parts.append(lookup(inputs[name]))
    out = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="tabular_features")(parts)
    return inputs, out


def named_columns(path: Path, inputs: dict[str, str]) -> tuple[dict[str, np.ndarray], Callable[[int], str]]:
    """Raw rows of a CSV or parquet file for a model's named inputs (input name -> dtype), by header:
    one (rows, 1) array per input, and where each row is in the file. Other columns are ignored."""
    fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    try:
        columns = {input_name(column.name): column for column in read_columns(str(path), fmt)}
        found = {}
        for name, dtype in inputs.items():
            if name not in columns:
                listed = _listed([column.name for column in columns.values()])
                raise DataError(f"{path} has no column for the model's input '{name}'; its columns are: {listed}",
                                hint=did_you_mean(name, [c for c in columns if c not in inputs]) or
                                f"the model takes the columns {_listed(list(inputs))}")
            column = columns[name]
            if dtype == "string":
                found[name] = column.values.astype(str).reshape(-1, 1)
            else:
                found[name] = column.numbers(str(path), None).astype(dtype).reshape(-1, 1)
    except DataError as error:
        error.key = None  # the file is the command's input, not a dataset key
        raise
    return found, next(iter(columns.values())).where
