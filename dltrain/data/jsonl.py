"""`format: jsonl` (a `.jsonl` file): one JSON object a line. Each line's text is its `features` field
(default `text`), or `template` filled with its fields (`"Instruction:\n{instruction}\n\nResponse:\n{response}"`);
`label` names the field holding its class. Without `label` the texts are unlabelled: a causal LM trains on them
alone. The texts stay raw strings: a KerasHub task's preprocessor tokenizes them inside the model."""

from __future__ import annotations

import json
import string
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.config import DatasetConfig
from dltrain.data.types import DatasetInfo, Source, Split
from dltrain.errors import DataError

DEFAULT_FIELD = "text"


def template_fields(template: str) -> list[str]:
    """The field names a template fills in, in order ("{{" and "}}" are literal braces)."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def _text_field(config: DatasetConfig) -> str:
    if isinstance(config.features, list):
        if len(config.features) != 1:
            raise DataError("a JSON-lines dataset gives one text per line", key="dataset.features",
                            hint="name one field, or write a template that joins several")
        return config.features[0]
    return config.features or DEFAULT_FIELD


@cache
def _lines(path: str, stamp: tuple[int, int]) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each non-blank line; `stamp` (size, mtime) makes a changed file read again."""
    rows = []
    try:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as error:
                    raise DataError(f"{path}:{number}: not JSON ({error.msg})", key="dataset.path",
                                    hint="each line holds one JSON object") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}",
                                    key="dataset.path", hint="each line holds one JSON object")
                rows.append((number, row))
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text", key="dataset.path") from None
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}", key="dataset.path") from None
    if not rows:
        raise DataError(f"{path} has no lines", key="dataset.path", hint="one JSON object a line")
    return rows


def lines(path: str) -> list[tuple[int, dict[str, Any]]]:
    """The file's JSON objects with their line numbers, read once while the file is unchanged."""
    stat = Path(path).stat()
    return _lines(path, (stat.st_size, stat.st_mtime_ns))


def _text(config: DatasetConfig, number: int, row: dict[str, Any]) -> str:
    if config.template is not None:
        missing = [f for f in template_fields(config.template) if f not in row]
        if missing:
            raise DataError(f"{config.path}:{number}: the line has no field '{missing[0]}', which dataset.template "
                            f"names", key="dataset.template",
                            hint=f"the line's fields: {', '.join(row) or 'none'}")
        return config.template.format_map({k: "" if v is None else v for k, v in row.items()})
    field = _text_field(config)
    if not isinstance(row.get(field), str):
        what = "has no field" if field not in row else "has no text in the field"
        raise DataError(f"{config.path}:{number}: the line {what} '{field}'", key="dataset.features",
                        hint=f"the line's fields: {', '.join(row) or 'none'}; name the text's field in "
                             "dataset.features, or write dataset.template")
    return row[field]


def _class_names(config: DatasetConfig) -> list[str] | None:
    if config.label is None:
        return None
    values = set()
    for number, row in lines(config.path):
        if config.label not in row or isinstance(row[config.label], (dict, list)) or row[config.label] is None:
            raise DataError(f"{config.path}:{number}: the line has no label in the field '{config.label}'",
                            key="dataset.label", hint=f"the line's fields: {', '.join(row) or 'none'}")
        values.add(str(row[config.label]))
    return sorted(values)


def describe(config: DatasetConfig) -> DatasetInfo:
    """Strings in; classes from the label field's distinct values (none without `label`)."""
    names = _class_names(config)
    return DatasetInfo(Path(config.path).name, (), len(names) if names else None, names, features=None,
                       labelled=names is not None)


def read(config: DatasetConfig, seed: int) -> Source:
    """Every line's text as a (n,) array of str, and its class index (zeros when unlabelled)."""
    info = describe(config)
    rows = lines(config.path)
    x = np.empty(len(rows), dtype=object)
    x[:] = [_text(config, number, row) for number, row in rows]
    if info.class_names:
        index = {name: i for i, name in enumerate(info.class_names)}
        y = np.array([index[str(row[config.label])] for _, row in rows], dtype=np.int64)
    else:
        y = np.zeros(len(rows), dtype=np.int64)
    return Source(Split(x, y), None, info)
