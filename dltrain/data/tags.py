"""Multi-label targets from a table: a column of tags split on `label_separator`, or several 0/1 columns,
become multi-hot rows, one class per tag (binary_crossentropy and a sigmoid output train on them)."""

from __future__ import annotations

import numpy as np

from dltrain.data.columns import Column
from dltrain.errors import DataError


def tag_lists(path: str, column: Column, separator: str) -> list[list[str]]:
    """Each row's tags (stripped); an empty cell or an empty tag between separators is an error naming the row."""
    found = []
    for i, cell in enumerate(column.values.astype(str)):
        if not cell:
            raise DataError(f"{path} {column.where(i)}: the tags column '{column.name}' is empty", key="dataset.label",
                            hint="every row needs at least one tag; remove the untagged rows")
        tags = [tag.strip() for tag in cell.split(separator)]
        if not all(tags):
            raise DataError(f"{path} {column.where(i)}: '{cell}' in column '{column.name}' has an empty tag",
                            key="dataset.label",
                            hint=f"separate the tags with one '{separator}', with none at either end")
        found.append(tags)
    return found


def encode_tags(path: str, column: Column, separator: str,
                classes: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Multi-hot float32 rows and the class names: every tag of the file sorted, or `classes` (the training
    source's), when a tag outside them is an error naming its row."""
    rows = tag_lists(path, column, separator)
    if classes is None:
        classes = sorted({tag for tags in rows for tag in tags})
        if len(classes) < 2:
            raise DataError(f"the tags column '{column.name}' of {path} holds one tag ('{classes[0]}'); "
                            "multi-label classification needs at least 2", key="dataset.label",
                            hint=f"check the column and label_separator ('{separator}')")
    index = {name: j for j, name in enumerate(classes)}
    y = np.zeros((len(rows), len(classes)), dtype=np.float32)
    for i, tags in enumerate(rows):
        for tag in tags:
            if tag not in index:
                raise DataError(f"{path} {column.where(i)}: the tag '{tag}' is not one of the training tags",
                                key="dataset.label", hint=f"the training data's tags are: {', '.join(classes)}")
            y[i, index[tag]] = 1.0
    return y, list(classes)


def encode_columns(path: str, columns: list[Column]) -> tuple[np.ndarray, list[str]]:
    """Several 0/1 label columns as multi-hot float32 rows; the classes are the column names, in their order."""
    parts = []
    for column in columns:
        values = column.values
        text = None if values.dtype.kind == "f" else values.astype(str)
        numbers = values if text is None else np.array([_number(cell) for cell in text])
        bad = np.flatnonzero(~np.isin(numbers, (0.0, 1.0)))
        if len(bad):
            i = bad[0]
            if text is not None:
                shown = f"'{text[i]}'" if text[i] else "an empty cell"
            else:
                shown = "an empty cell" if np.isnan(values[i]) else f"{values[i]:g}"
            raise DataError(f"{path} {column.where(i)}: the label column '{column.name}' holds {shown}, not 0 or 1",
                            key="dataset.label", hint="a list of label columns holds one 0/1 column per class")
        parts.append(numbers.astype(np.float32))
    return np.stack(parts, axis=1), [column.name for column in columns]


def _number(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return float("nan")

