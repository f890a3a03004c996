"""`csv` and `parquet` tables: one column holds the labels (or tags, or several 0/1 label columns: multi-label),
the others are features (numbers, categories or free text).

Numeric columns pass through one `Normalization` layer adapted on the training rows, category columns
through a one-hot `StringLookup` each and `text:` columns through a `TextVectorization` each; all live in the
model, so the saved model takes raw rows.
Reading the files is data/columns.py's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config import DatasetConfig, did_you_mean
import dltrain.data.tags as tags
import dltrain.data.text as text
# Re-exported: predict, the tests and the other table sources read files through these names.
from dltrain.data.columns import (Column, is_number, input_name, named_columns, read_columns,  # noqa: F401
                                  read_csv, read_parquet)
from dltrain.data.types import DatasetInfo, Source, Split
from dltrain.errors import DataError

# A text column with more distinct values than this (and than half its rows) is probably an id or free
# text; one-hot encoding it makes the model wide and the note says so.
_WIDE_VOCABULARY = 50
# Inferred classification with more integer classes than this is likely a regression target (a count).
_MANY_CLASSES = 20


@dataclass
class Table:
    """What a config makes of a file: feature columns, the label column(s) and the task."""

    path: str
    features: list[Column]
    names: list[str]  # Keras input names, one per feature column
    kinds: list[str]  # per feature: "number", "category" (one-hot) or "text" (TextVectorization)
    label: Column  # the label column (the tags column of multi-label data; the first of a list)
    task: str  # "classification", "regression" or "multilabel"
    labels: list[Column]  # every label column (0/1 columns of multi-label data)
    separator: str | None = None  # the tags column's label_separator


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
        if all(is_number(name) for name in columns):
            hint = "the first line must be a header naming the columns; this one holds numbers"
        raise DataError(f"which column of {path} holds the labels? its columns are: {_listed(list(columns))}",
                        key="dataset.label", hint=hint)
    label_names = [config.label] if isinstance(config.label, str) else list(config.label)
    labels = [_pick(path, columns, name, "dataset.label") for name in label_names]
    label = labels[0]
    texts = _listing(config.text)
    for name in texts:
        _pick(path, columns, name, "dataset.text")
        if name in label_names:
            raise DataError(f"'{name}' is a label column; it cannot also be a text input", key="dataset.text",
                            hint=f"remove '{name}' from text")
    if config.features is None:  # the text columns when there are some, else every column but the labels
        names = list(texts) or [name for name in columns if name not in label_names]
    else:
        names = _listing(config.features)
        for name in label_names:
            if name in names:
                raise DataError(f"'{name}' is the label column; it cannot also be a feature",
                                key="dataset.features", hint=f"remove '{name}' from features")
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            raise DataError(f"'{twice}' is listed twice", key="dataset.features", hint="list each column once")
        names += [name for name in texts if name not in names]
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
    for one in labels:
        if one.unsupported:
            raise DataError(f"{path}: the label column '{one.name}' has the type {one.unsupported}",
                            key="dataset.label", hint="labels are numbers or text")
    multi = len(label_names) > 1 or isinstance(config.label, list) or config.label_separator is not None
    if label.values.dtype.kind != "f" and not multi:
        empty = np.flatnonzero(label.values == "")
        if len(empty):
            raise DataError(f"{path} {label.where(empty[0])}: the label column '{label.name}' is empty",
                            key="dataset.label", hint="every row needs a label; remove the unlabelled rows")
    task = "multilabel" if multi else config.task or (
        "regression" if label.numeric and not label.integer else "classification")
    kinds = ["text" if c.name in texts else "number" if c.numeric else "category" for c in features]
    return Table(path, features, list(inputs), kinds, label, task, labels, config.label_separator)


def _listing(names: str | list[str] | None) -> list[str]:
    return [] if names is None else [names] if isinstance(names, str) else list(names)


def _labels(tab: Table, classes: list[str] | None = None) -> tuple[np.ndarray, list[str] | None]:
    """Labels as class indices and the class names (sorted distinct values), float32 regression targets, or
    multi-hot float32 rows and the tags (`classes`: the training data's, for another source of the same run)."""
    label, path = tab.label, tab.path
    if tab.task == "multilabel":
        if tab.separator is not None:
            return tags.encode_tags(path, label, tab.separator, classes)
        return tags.encode_columns(path, tab.labels)
    if tab.task == "regression":
        if not label.numeric:
            bad = next(i for i, cell in enumerate(label.values) if cell and not is_number(cell))
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
    width: int | None = 0
    notes = []
    if "text" in tab.kinds and config.output_mode == "int":
        if len(tab.kinds) > 1:
            raise DataError(f"the text column '{tab.features[tab.kinds.index('text')].name}' gives token ids "
                            "(output_mode: int), which cannot be joined with other columns", key="dataset.text",
                            hint="read one text column alone, or set output_mode: multi_hot (or tf_idf) with "
                                 "max_tokens")
        width = None
    for column, kind in zip(tab.features, tab.kinds):
        if kind == "number":
            width += 1
            continue
        if kind == "text":
            width = text.vector_shape(config)[0] if width is None else width + config.max_tokens
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
                       notes=notes, multi_label=tab.task == "multilabel")


def describe(config: DatasetConfig) -> DatasetInfo:
    """Classes, feature names and the preprocessed width, from the file's header and values (no TensorFlow)."""
    tab = table(config)
    _, class_names = _labels(tab, config.class_names if tab.task == "multilabel" else None)
    return _info(tab, config, class_names)


def _features(tab: Table) -> dict[str, np.ndarray]:
    """One array per feature column, named by its input: (rows, 1) float32 numbers or str categories, and
    (rows,) free texts (an object array: each text at its own length)."""
    x = {}
    for name, column, kind in zip(tab.names, tab.features, tab.kinds):
        if kind == "text":
            x[name] = np.empty(len(column.values), dtype=object)
            x[name][:] = column.values.astype(str).tolist()
            continue
        values = column.numbers(tab.path, "dataset.path").astype(np.float32) if kind == "number" else column.values
        x[name] = values.reshape(-1, 1)
    return x


def read(config: DatasetConfig, seed: int) -> Source:
    """The table as one training split of named raw columns, with its preprocessing for the model."""
    tab = table(config)
    # A validation or test source of a multi-label run gets the training tags as class_names (data/sources.py).
    y, class_names = _labels(tab, config.class_names if tab.task == "multilabel" else None)
    info = _info(tab, config, class_names)
    vocabularies = {name: _vocabulary(column) for name, column, kind in zip(tab.names, tab.features, tab.kinds)
                    if kind == "category"}
    numeric = [name for name, kind in zip(tab.names, tab.kinds) if kind == "number"]
    texts = [name for name, kind in zip(tab.names, tab.kinds) if kind == "text"]
    return Source(Split(_features(tab), y), None, info,
                  functools.partial(preprocessing, numeric=numeric, vocabularies=vocabularies, names=tab.names,
                                    texts=texts, config=config))


def preprocessing(train: Split, *, numeric: list[str], vocabularies: dict[str, list[str]], names: list[str],
                  texts: list[str] | None = None, config: DatasetConfig | None = None) -> tuple[dict[str, Any], Any]:
    """Raw inputs, one per column; numbers normalized (adapted on `train`), categories one-hot encoded and
    free texts vectorized by a TextVectorization adapted on the training texts."""
    import keras

    texts = texts or []
    inputs = {name: keras.Input(shape=() if name in texts else (1,), name=name,
                                dtype="float32" if name in numeric else "string") for name in names}
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
    for name in texts:
        parts.append(text.vectorized(config, train.x[name], name=f"text_{name}")(inputs[name]))
    out = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="tabular_features")(parts)
    return inputs, out
