"""Composition before validation: `extends` merges base files, `--set` overrides single values."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from dltrain.config.references import parse_ref
from dltrain.config.yamlsource import Path_, SourceMap, dotted, parse_yaml, read_yaml
from dltrain.errors import ConfigError, Location


def _merge(base: Any, top: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by the top value."""
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return top


def load_file(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], SourceMap]:
    data, source = read_yaml(path)
    if data is None:
        raise ConfigError("config file is empty", where=Location(str(path)),
                          hint="a config needs at least 'dataset', 'model' and 'loss'")
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of keys, got {type(data).__name__}",
                          where=Location(str(path), 1, 1))
    base_name = data.pop("extends", None)
    if base_name is None:
        return data, source
    where = source.locate(("extends",))
    if not isinstance(base_name, str):
        raise ConfigError("'extends' must be a path to a YAML file", where=where, key="extends")
    # Read it by the path as written (messages show `configs/base.yaml`); compare resolved paths for cycles.
    base_path = Path(os.path.normpath(path.parent / base_name))
    if base_path.resolve() in chain:
        cycle = " -> ".join(p.name for p in chain + (base_path.resolve(),))
        raise ConfigError(f"'extends' forms a cycle: {cycle}", where=where, key="extends",
                          hint="remove one of the 'extends' lines")
    if not base_path.is_file():
        raise ConfigError(f"base config '{base_name}' not found", where=where, key="extends",
                          hint=f"the path is relative to {path.parent}")
    base, base_source = load_file(base_path, chain + (base_path.resolve(),))
    source.positions.pop(("extends",), None)
    for key, loc in base_source.positions.items():
        base_source.positions[key] = replace(loc, via=(f"{where}",) + loc.via)
    base_source.update(source)
    return _merge(base, data), base_source


def parse_key_path(text: str) -> Path_:
    """Parse `model.layers[2].Dense.units` into ('model', 'layers', 2, 'Dense', 'units')."""
    path = parse_ref(text)
    if path is None:
        raise ConfigError(f"cannot read key path '{text}'", where=Location("--set"),
                          hint="write it like training.epochs=3 or model.layers[2].Dense.units=64")
    return path


def apply_override(data: dict[str, Any], source: SourceMap, override: str) -> None:
    """Apply one `key.path=value` override in place; the value is read as YAML (`3e-4`, `[1, 2]`)."""
    key_text, sep, value_text = override.partition("=")
    where = Location("--set")
    if not sep or not key_text.strip():
        raise ConfigError("an override must look like key.path=value", where=where,
                          hint="for example --set training.epochs=3")
    path = parse_key_path(key_text.strip())
    value, _ = parse_yaml(value_text, f"--set {override}")
    node: Any = data
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(f"index [{part}] is out of range (the list has {size} items)",
                                  where=where, key=dotted(path[: i + 1]))
            if isinstance(node[part], str) and node[part] == nxt:
                node[part] = {nxt: {}}  # `Flatten` becomes `{Flatten: {...}}` to take an argument
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"'{dotted(path[:i])}' is not a mapping", where=where, key=dotted(path[: i + 1]))
            if node.get(part) is None:
                node[part] = [] if isinstance(nxt, int) else {}
            elif isinstance(node[part], str) and node[part] == nxt:
                node[part] = {nxt: {}}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"index [{last}] is out of range", where=where, key=dotted(path))
    elif not isinstance(node, dict):
        raise ConfigError(f"'{dotted(path[:-1])}' is not a mapping", where=where, key=dotted(path))
    node[last] = value
    for known in [p for p in source.positions if p[: len(path)] == path]:
        del source.positions[known]
    source.positions[path] = where
