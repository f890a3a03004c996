"""Request bodies in TensorFlow Serving's REST format -> one array per model input; outputs -> its answers.

Rows (`{"instances": [...]}`) or columns (`{"inputs": ...}`); a value is a nested list of numbers, a string
(text inputs), `{"b64": ...}` (an image file's bytes for an image input; UTF-8 text for a text input), or
for a model of several inputs an object by input name. Values go through the same readers as files do."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from dltrain.errors import DataError
from dltrain.predict.inputs import read_image

# A request's image may be a small file that decodes to a huge one (a PNG of one colour compresses ~1000:1).
MAX_REQUEST_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class Input:
    """One model input: its name, dtype (`float32`, `int64`, `string`) and one example's shape."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def image(self) -> bool:
        """Whether an image file can be this input (height x width, optionally 1, 3 or 4 channels)."""
        known = all(d is not None for d in self.shape)
        return (self.dtype != "string" and known and
                (len(self.shape) == 2 or (len(self.shape) == 3 and self.shape[-1] in (1, 3, 4))))

    def describe(self) -> str:
        """What a value for this input must be, for messages."""
        if self.dtype == "string":
            return "a string"
        shape = tuple("?" if d is None else d for d in self.shape)
        what = "a number" if shape in ((), (1,)) else f"an array of shape {shape}".replace("'", "")
        return what + (" or {\"b64\": PNG/JPEG bytes}" if self.image else "") + f" ({self.dtype})"


@dataclass
class Request:
    """A request's examples: one array per model input (rows first), and whether it came as columns."""

    arrays: list[np.ndarray]
    rows: int
    columns: bool


def parse_body(body: bytes) -> Any:
    """The JSON of a request body; a DataError saying where it stops being JSON."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as error:
        raise DataError(f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}",
                        hint='send a JSON object such as {"instances": [...]}') from None
    except RecursionError:
        raise DataError("malformed JSON: nested too deeply",
                        hint='send a JSON object such as {"instances": [...]}') from None
    except (UnicodeDecodeError, ValueError) as error:
        raise DataError(f"malformed JSON: {type(error).__name__}",
                        hint='send a UTF-8 JSON object such as {"instances": [...]}') from None


def read_request(body: Any, inputs: list[Input], *, names: dict[str, str] | None = None) -> Request:
    """A parsed predict body as arrays for the model's `inputs`; `names` maps other spellings of input names
    (a table's column names) to them."""
    if not isinstance(body, dict):
        raise DataError(f"the body is a JSON {_kind(body)}; expected an object",
                        hint='send {"instances": [...]} (one item per example) or {"inputs": ...}')
    signature = body.get("signature_name") or "serving_default"
    if signature != "serving_default":
        raise DataError(f"no signature '{_cut(signature)}'; this model has only 'serving_default'")
    if ("instances" in body) == ("inputs" in body):
        raise DataError('the body needs "instances" (rows) or "inputs" (columns), one of the two',
                        hint='send {"instances": [...]}, one item per example')
    aliases = {name: name for name in (i.name for i in inputs)} | (names or {})
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise DataError(f'"instances" is {_what(rows)}; expected a non-empty list, one item per example')
        if len(inputs) == 1 and not _named(rows[0], inputs, aliases):
            arrays = [_stack([_value(row, inputs[0], f"instances[{i}]") for i, row in enumerate(rows)], inputs[0])]
        else:
            by_name = [_by_name(row, inputs, aliases, f"instances[{i}]") for i, row in enumerate(rows)]
            arrays = [_stack([_value(row[spec.name], spec, f"instances[{i}].{spec.name}")
                              for i, row in enumerate(by_name)], spec) for spec in inputs]
        return Request(arrays, len(rows), columns=False)
    columns = body["inputs"]
    if len(inputs) > 1 or (isinstance(columns, dict) and _named(columns, inputs, aliases)):
        columns = _by_name(columns, inputs, aliases, "inputs")
    else:
        columns = {inputs[0].name: columns}
    arrays = []
    for spec in inputs:
        column = columns[spec.name]
        if not isinstance(column, list) or not column:
            raise DataError(f'"inputs" for {spec.name!r} is {_what(column)}; '
                            "expected a non-empty list, one item per example")
        arrays.append(_stack([_value(v, spec, f"inputs.{spec.name}[{i}]") for i, v in enumerate(column)], spec))
    if len({len(a) for a in arrays}) > 1:
        raise DataError("the inputs hold different numbers of examples: " +
                        ", ".join(f"{s.name} {len(a)}" for s, a in zip(inputs, arrays)),
                        hint="give every input one value per example")
    return Request(arrays, len(arrays[0]), columns=True)


def answer_body(outputs: list[np.ndarray], output_names: list[str], columns: bool) -> dict[str, Any]:
    """TF Serving's answer: `predictions` (rows) or `outputs` (columns); an object by output name where the
    model has several outputs."""
    if columns:
        if len(outputs) == 1:
            return {"outputs": outputs[0].tolist()}
        return {"outputs": {name: out.tolist() for name, out in zip(output_names, outputs)}}
    if len(outputs) == 1:
        return {"predictions": outputs[0].tolist()}
    lists = [out.tolist() for out in outputs]
    return {"predictions": [dict(zip(output_names, row)) for row in zip(*lists)]}


def _named(value: Any, inputs: list[Input], aliases: dict[str, str]) -> bool:
    """Whether `value` is an object of input values by name (not a `b64` value)."""
    return isinstance(value, dict) and "b64" not in value and any(k in aliases for k in value)


def _by_name(value: Any, inputs: list[Input], aliases: dict[str, str], where: str) -> dict[str, Any]:
    names = [spec.name for spec in inputs]
    if not isinstance(value, dict) or "b64" in value:
        raise DataError(f"{where} is {_what(value)}; expected an object with the model's inputs "
                        f"{', '.join(names)}")
    found: dict[str, Any] = {}
    for key, item in value.items():
        if key not in aliases:
            from dltrain.config import did_you_mean

            raise DataError(f"{where} has an unknown input '{_cut(key)}'",
                            hint=did_you_mean(str(key), list(aliases)) or f"the model takes {', '.join(names)}")
        found[aliases[key]] = item
    missing = [name for name in names if name not in found]
    if missing:
        raise DataError(f"{where} has no value for {', '.join(missing)}",
                        hint=f"the model takes {', '.join(names)}")
    return found


def _value(value: Any, spec: Input, where: str) -> Any:
    """One example's value for `spec`: a str for text, else an array of its shape."""
    if isinstance(value, dict) and set(value) == {"b64"}:
        data = _b64(value["b64"], where)
        if spec.dtype == "string":
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{where}: the b64 bytes are not UTF-8 text; expected {spec.describe()}") from None
        if not spec.image:
            raise DataError(f"{where}: a b64 value is an image file, but input '{spec.name}' takes {spec.describe()}")
        return read_image(data, tuple(int(d) for d in spec.shape), name=where, max_pixels=MAX_REQUEST_PIXELS)[0]
    if spec.dtype == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            return value[0]
        raise DataError(f"{where} is {_what(value)}; input '{spec.name}' takes {spec.describe()}")
    if isinstance(value, (str, dict)) or value is None:
        raise DataError(f"{where} is {_what(value)}; input '{spec.name}' takes {spec.describe()}")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{where} is not an array of numbers (ragged, or holding other values); "
                        f"input '{spec.name}' takes {spec.describe()}") from None
    if any(d is None for d in spec.shape):
        if array.ndim != len(spec.shape) or any(d is not None and d != a for d, a in zip(spec.shape, array.shape)):
            raise DataError(f"{where} has shape {array.shape}; input '{spec.name}' takes {spec.describe()}")
    else:
        shape = tuple(int(d) for d in spec.shape)
        if array.size != int(np.prod(shape)) or (array.shape != shape and array.ndim > 1):
            raise DataError(f"{where} has shape {array.shape}; input '{spec.name}' takes {spec.describe()}")
        array = array.reshape(shape)
    if spec.dtype.startswith(("int", "uint")) and not np.all(np.mod(array, 1) == 0):
        raise DataError(f"{where} holds numbers that are not integers; input '{spec.name}' takes {spec.describe()}")
    return array


def _stack(values: list[Any], spec: Input) -> np.ndarray:
    if spec.dtype == "string":
        shape = tuple(d or 1 for d in spec.shape)
        return np.array(values, dtype=object).reshape(len(values), *shape)
    try:
        return np.stack(values).astype(spec.dtype)
    except ValueError:  # examples of different lengths where a dimension is free
        raise DataError(f"the examples for input '{spec.name}' have different shapes "
                        f"({', '.join(str(v.shape) for v in values[:3])}, ...)",
                        hint="send one request per shape, or pad them to one length") from None


def _b64(text: Any, where: str) -> bytes:
    if not isinstance(text, str):
        raise DataError(f'{where}: "b64" is {_what(text)}; expected a base64 string')
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise DataError(f'{where}: "b64" is not base64 (A-Z, a-z, 0-9, +, /, = padding)') from None


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _what(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {_cut(value)!r}"
    if isinstance(value, list):
        return "an empty list" if not value else f"a list of {len(value)}"
    kind = _kind(value)
    return {"object": "an object", "null": "null", "boolean": f"{value}".lower()}.get(kind, f"the {kind} {value}")


def _cut(value: Any) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."
