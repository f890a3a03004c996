"""Table files read into columns: a CSV (standard library) or parquet file (pyarrow) as text cells or typed
numbers, each cell with the line or row it came from, for messages that name it."""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Collection

import numpy as np

from dltrain.config import did_you_mean
from dltrain.errors import DataError

_INTEGER = re.compile(r"^[+-]?\d+$")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


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
                bad = next(i for i, cell in enumerate(values) if not is_number(cell))
                raise DataError(f"{path} {self.where(bad)}: column '{self.name}' holds '{values[bad]}', "
                                "not a number", key=key, hint="fix the value or remove the row") from None
        bad_values = np.flatnonzero(~np.isfinite(values))
        if len(bad_values):
            i = bad_values[0]
            shown = "an empty cell" if np.isnan(values[i]) and self.values.dtype.kind == "f" else f"'{self.values[i]}'"
            raise DataError(f"{path} {self.where(i)}: column '{self.name}' holds {shown}, not a finite number",
                            key=key, hint="fill in a number or remove the row")
        return values


def is_number(cell: str) -> bool:
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


def open_parquet(path: str, *, schema_only: bool = False) -> tuple[Any, Any]:
    """(pyarrow, the file's table or only its schema); a DataError names the file, or says what to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet files needs pyarrow, which is not installed", key="dataset.format",
                        hint="pip install 'dltrain[parquet]' (or: pip install pyarrow)") from None
    try:
        return pa, pq.read_schema(path) if schema_only else pq.read_table(path)
    except (OSError, pa.ArrowException) as error:
        raise DataError(f"cannot read {path}: {error}", key="dataset.path",
                        hint="check that it is a parquet file") from None


def read_parquet(path: str) -> list[Column]:
    """A parquet file's columns: numbers as float64 (nulls NaN), text as str ("" for nulls)."""
    pa, table = open_parquet(path)
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


def _listed(columns: list[str]) -> str:
    return ", ".join(columns)


def named_columns(path: Path, inputs: dict[str, str], texts: Collection[str] = ()) -> tuple[
        dict[str, np.ndarray], Callable[[int], str]]:
    """Raw rows of a CSV or parquet file for a model's named inputs (input name -> dtype), by header:
    one (rows, 1) array per input ((rows,) for the free `texts`), and where each row is in the file. Other
    columns are ignored."""
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
                found[name] = column.values.astype(str).reshape((-1,) if name in texts else (-1, 1))
            else:
                found[name] = column.numbers(str(path), None).astype(dtype).reshape(-1, 1)
    except DataError as error:
        error.key = None  # the file is the command's input, not a dataset key
        raise
    return found, next(iter(columns.values())).where
