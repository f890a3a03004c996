"""pydantic's validation errors become one ConfigError: the first problem in file order, in the user's words."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dltrain.config.hints import short
from dltrain.config.yamlsource import Path_, SourceMap, dotted
from dltrain.errors import ConfigError, Location

_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _message(err: dict[str, Any], prefix: Path_ = ()) -> tuple[str, str | None]:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "list_type" and isinstance(got, str):
        return f"expected a list, got {short(got)}", f"write [{got}]"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {short(got)}", None
    if kind == "missing":
        *parent, key = prefix + tuple(p for p in err["loc"] if not _is_branch(p))
        where = f"under '{dotted(tuple(parent))}'" if parent else "at the top level"
        return "required key is missing", f"add '{key}:' {where}"
    if kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(v for k, v in ctx.items() if k in ("ge", "gt", "lt", "le"))
        return f"expected a number {op} {bound}, got {short(got)}", None
    if kind == "too_short":
        return "must not be empty", None
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {short(got)}", None
    return err["msg"].removeprefix("Value error, "), ctx.get("hint")


def _is_branch(part: Any) -> bool:
    # pydantic's union branches (`dict[str,any]`, `function-before[...]`); not a key such as a sweep
    # parameter's `model.layers[2].Dense.units`
    return isinstance(part, str) and (re.match(r"[a-z][a-z-]*\[", part) is not None or part in ("str", "bool"))


def _one_branch(errors: list[Any]) -> list[Any]:
    """Of a union's failed branches, keep the errors that got furthest into the value.

    `loss: {label: mse, aux: 5}` fails as one loss (at `loss`) and as a loss per output (at `loss.aux`);
    only the second says what is wrong."""
    def split(err: Any) -> tuple[tuple, bool]:
        loc = err["loc"]
        for i, part in enumerate(loc):
            if _is_branch(part):
                return loc[:i], i == len(loc) - 1
        return loc, False

    deeper = {split(e)[0] for e in errors if split(e)[0] != e["loc"] and not split(e)[1]}
    kept, seen_roots = [], set()
    for err in errors:
        root, at_root = split(err)
        if at_root:
            if root in deeper or root in seen_roots:
                continue
            seen_roots.add(root)
        kept.append(err)
    return kept


def to_config_error(error: ValidationError, source: SourceMap, file: Path, prefix: Path_ = ()) -> ConfigError:
    """Turn pydantic's errors into one ConfigError about the first problem in file order."""
    found: list[tuple[Path_, str, str | None]] = []
    for err in _one_branch(error.errors()):
        # pydantic adds the union branch (`str`, `dict[...]`) to the location; users never wrote it.
        path = prefix + tuple(p for p in err["loc"] if not _is_branch(p))
        ctx = err.get("ctx") or {}
        if "key" in ctx:  # errors raised for one key of a section point at that key
            path = path + (ctx["key"],)
        message, hint = _message(err, prefix)
        found.append((path, message, hint))

    def order(item: tuple[Path_, str, str | None]) -> tuple[int, int]:
        # Missing keys (no line of their own) come last: a misspelt key explains why one is missing.
        loc = source.locate(item[0])
        return (loc.line or 0, loc.column or 0) if loc and loc.line else (10**9, 0)

    found.sort(key=order)
    path, message, hint = found[0]
    if len(found) > 1:
        more = len(found) - 1
        hint = (hint + "; " if hint else "") + f"{more} more error{'s' if more > 1 else ''} after this one"
    where = source.locate(path) or Location(str(file))
    return ConfigError(message, where=where, key=source.key(path) or None, hint=hint)
