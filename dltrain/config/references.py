"""`${key.path}` references inside a config: resolved in place before validation. No TensorFlow."""

from __future__ import annotations

import copy
import difflib
import re
from typing import Any, Callable

from dltrain.errors import ConfigError
from dltrain.config.yamlsource import Path_, SourceMap, dotted

_REF = re.compile(r"\$(\$?)\{([^{}]*)\}")
_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

# Facts a dataset knows about itself; `${dataset.<fact>}` asks the dataset when the config does not say.
DATA_FACTS = ("num_classes", "input_shape", "class_names")

Lookup = Callable[[Path_], tuple[bool, Any]]


def parse_ref(text: str) -> Path_ | None:
    """`model.layers[2].Dense.units` as a key path, or None when it is not one."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "." and parts and pos + 1 < len(text):
            pos += 1
        match = _KEY_PART.match(text, pos)
        if not match:
            return None
        parts.append(match.group(1).strip() if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if not parts or not isinstance(parts[0], str):
        return None
    return tuple(parts)


def get_path(data: Any, path: Path_) -> tuple[bool, Any]:
    """(found, value) of the key path `path` in plain config data."""
    node = data
    for part in path:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return False, None
    return True, node


def _leaf_paths(data: Any, prefix: Path_ = ()) -> list[Path_]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in [prefix + (k,), *_leaf_paths(v, prefix + (k,))]]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in _leaf_paths(v, prefix + (i,))]
    return []


class Resolver:
    """Resolves every `${...}` in a config's data; remembers which keys held which references."""

    def __init__(self, data: dict[str, Any], source: SourceMap, defaults: Lookup, facts: Lookup) -> None:
        self.data = data
        self.source = source
        self.defaults = defaults
        self.facts = facts
        self.references: dict[Path_, str] = {}
        self._resolving: list[Path_] = []  # keys whose references are being resolved, outermost first

    def resolve_all(self) -> dict[str, Any]:
        """Replace every reference in the data (in place) and return it."""
        self._walk(self.data, ())
        return self.data

    def resolve_subtree(self, path: Path_) -> Any:
        """Resolve the references under one key (in place) and return its value."""
        found, value = get_path(self.data, path)
        if not found:
            return None
        value = self._walk(value, path)
        _set(self.data, path, value)
        return value

    def _walk(self, node: Any, path: Path_) -> Any:
        if isinstance(node, dict):
            for key in list(node):
                node[key] = self._walk(node[key], path + (key,))
        elif isinstance(node, list):
            for i in range(len(node)):
                node[i] = self._walk(node[i], path + (i,))
        elif isinstance(node, str) and "${" in node:
            return self._string(node, path)
        return node

    def _string(self, text: str, path: Path_) -> Any:
        self._resolving.append(path)
        try:
            return self._interpolate(text, path)
        finally:
            self._resolving.pop()

    def _interpolate(self, text: str, path: Path_) -> Any:
        whole = _REF.fullmatch(text)
        if whole and not whole.group(1):
            # A value that is one reference keeps the referenced type: `${dataset.input_shape}` is a list.
            self.references[path] = text
            return self._value(whole.group(2), path)

        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # `$${...}` is a literal `${...}`
                return "${" + match.group(2) + "}"
            value = self._value(match.group(2), path)
            if isinstance(value, (dict, list)):
                raise self._error(path, f"'${{{match.group(2)}}}' is a {type(value).__name__} and cannot be "
                                        "part of a string", "use the reference as the whole value")
            return str(value)

        result = _REF.sub(replace, text)
        if result != text:
            self.references[path] = text
        return result

    def _value(self, ref: str, at: Path_) -> Any:
        target = parse_ref(ref)
        if target is None:
            raise self._error(at, f"cannot read the reference '${{{ref}}}'",
                              "write it like ${training.epochs} or ${model.layers[0].Dense.units}")
        inside = [i for i, p in enumerate(self._resolving) if p[: len(target)] == target]
        if inside:
            chain = " -> ".join(dotted(p) for p in [*self._resolving[inside[0]:], target])
            raise self._error(at, f"references form a cycle: {chain}", "one of these keys needs a plain value")
        found, value = get_path(self.data, target)
        if found:
            if isinstance(value, str) and "${" in value or isinstance(value, (dict, list)):
                value = self._walk(value, target)
                _set(self.data, target, value)
            return copy.deepcopy(value)  # two keys never share one list or mapping
        for lookup in (self.facts, self.defaults):
            found, value = lookup(target)
            if found:
                return value
        candidates = ["${" + dotted(p) + "}" for p in _leaf_paths(self.data)]
        candidates += ["${dataset." + fact + "}" for fact in DATA_FACTS]
        close = difflib.get_close_matches("${" + ref + "}", candidates, n=1, cutoff=0.75)
        hint = f"did you mean '{close[0]}'?" if close else "a reference names a key of this config"
        raise self._error(at, f"unknown reference '${{{ref}}}'", hint)

    def _error(self, path: Path_, message: str, hint: str | None) -> ConfigError:
        return ConfigError(message, where=self.source.locate(path), key=dotted(path), hint=hint)


def _set(data: Any, path: Path_, value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
