"""Where each value of a resolved config came from: a file line, `--set`, a reference, or a default."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from dltrain.config.loaded import LoadedConfig
from dltrain.config.references import get_path
from dltrain.config.yamlsource import Path_, dotted

DEFAULT = "default"


@dataclass(frozen=True)
class Origin:
    """One leaf value of the resolved config and where it came from."""

    key: str
    value: Any
    source: str


def _leaves(value: Any, path: Path_ = ()) -> list[tuple[Path_, Any]]:
    if isinstance(value, dict) and value:
        return [leaf for key, item in value.items() for leaf in _leaves(item, path + (key,))]
    if isinstance(value, list) and value:
        return [leaf for i, item in enumerate(value) for leaf in _leaves(item, path + (i,))]
    return [(path, value)]


def _written(data: Any, path: Path_) -> bool:
    return get_path(data, path)[0]


def _source(loaded: LoadedConfig, path: Path_) -> str:
    if path == ("seed",) and not _written(loaded.written, path):
        return "drawn at random"
    for end in range(len(path), 0, -1):
        if path[:end] in loaded.origins:  # a value a block gave: `$filters` from its use or its default
            return loaded.origins[path[:end]]
    for end in range(len(path), 0, -1):
        written = loaded.source.written(path[:end])[0]
        if written in loaded.references:
            where = loaded.locate(path[:end])
            return f"{loaded.references[written]} at {replace(where, via=())}" if where \
                else loaded.references[written]
    if not _written(loaded.written, path):
        return DEFAULT
    where = loaded.locate(path)
    return str(replace(where, via=())) if where else DEFAULT  # the file and line say enough here


def origins(loaded: LoadedConfig) -> list[Origin]:
    """Every leaf of the resolved config, in order, with the place its value came from."""
    return [Origin(dotted(path), value, _source(loaded, path)) for path, value in _leaves(loaded.resolved())]
