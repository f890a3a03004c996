"""Read YAML safely into plain data while remembering where every key came from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dltrain.errors import ConfigError, Location

Path_ = tuple[str | int, ...]

# A config is a few hundred nodes; anything near this is an alias bomb ("billion laughs").
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_BYTES = 1_000_000

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as `3e-4` (YAML 1.1 reads them as strings)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def to_yaml(data: Any) -> str:
    """YAML text with keys in the order given: what `dltrain config` prints and a run's config.yaml holds."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)


def dotted(path: Path_) -> str:
    """Format a key path the way users read it: `model.layers[2].Dense.units`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# Where an expanded layer was written (`model.layers[i]` or `blocks.<name>.layers[k]`) and the block uses
# that put it in the model, innermost first.
Written = tuple[Path_, tuple[str, ...]]


@dataclass
class SourceMap:
    """Where each key path of a config was written: file:line:column or `--set ...`."""

    positions: dict[Path_, Location] = field(default_factory=dict)
    # Set once blocks are expanded: `model.layers[j]` of the expanded list -> where that layer was written.
    aliases: dict[Path_, Written] = field(default_factory=dict)

    def written(self, path: Path_) -> Written:
        """The key path as the user wrote it (a layer of a block: inside `blocks:`), with the uses around it."""
        found = self.aliases.get(tuple(path[:3])) if self.aliases else None
        if found is None:
            return tuple(path), ()
        return found[0] + tuple(path[3:]), found[1]

    def key(self, path: Path_) -> str:
        """The dotted key of `path` as the user wrote it."""
        return dotted(self.written(path)[0])

    def locate(self, path: Path_) -> Location | None:
        """The position of `path`, or of its nearest recorded parent."""
        path, within = self.written(path)
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found is not None:
                return replace(found, within=found.within + within) if within else found
        return None

    def update(self, other: SourceMap, prefix: Path_ = ()) -> None:
        """Take positions from `other` (a later layer of the config wins)."""
        for path, loc in other.positions.items():
            self.positions[prefix + path] = loc


def _location(mark: yaml.Mark, filename: str) -> Location:
    return Location(filename, mark.line + 1, mark.column + 1)


def _syntax_error(error: yaml.MarkedYAMLError, filename: str, text: str) -> ConfigError:
    mark = error.problem_mark or error.context_mark
    problem = error.problem or error.context or "invalid YAML"
    if mark is None:
        return ConfigError(f"invalid YAML: {problem}", where=Location(filename))
    lines = text.splitlines()
    # One space per tab keeps the caret under its column (terminals would widen a tab).
    source_line = (lines[mark.line] if mark.line < len(lines) else "").replace("\t", " ")
    caret = " " * mark.column + "^"
    # `{units: ${dataset.num_classes}}`: in YAML's [ ] and { } forms a `{` starts a mapping.
    hint = "inside [ ] or { }, quote a reference: \"${...}\"" if "${" in source_line[: mark.column + 2] else None
    if "'\\t'" in problem:
        hint = "YAML indents with spaces; replace the tab"
    return ConfigError(
        f"invalid YAML: {problem}\n  {source_line}\n  {caret}",
        where=_location(mark, filename),
        hint=hint,
    )


class _Builder:
    """Turns a composed node tree into plain Python data, recording positions and refusing tags."""

    def __init__(self, loader: _Loader, filename: str) -> None:
        self.loader = loader
        self.filename = filename
        self.source = SourceMap()
        self.nodes = 0

    def build(self, node: yaml.Node, path: Path_, depth: int = 0) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise ConfigError(
                f"config expands to more than {MAX_NODES:,} values",
                where=_location(node.start_mark, self.filename),
                hint="YAML aliases that repeat a large subtree are refused; write the values out",
            )
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"config nests deeper than {MAX_DEPTH} levels",
                where=_location(node.start_mark, self.filename),
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            self._check_tag(node, _SEQ_TAG)
            return [self._item(child, path + (i,), depth) for i, child in enumerate(node.value)]
        return self._scalar(node)

    def _item(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.source.positions[path] = _location(node.start_mark, self.filename)
        return self.build(node, path, depth + 1)

    def _mapping(self, node: yaml.MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        self._check_tag(node, _MAP_TAG)
        self.loader.flatten_mapping(node)  # resolves `<<:` merge keys the way PyYAML does
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalar(key_node)
            where = _location(key_node.start_mark, self.filename)
            if type(key) is int:  # a class index (`class_weight: {0: 4.0}`): kept as its text, as JSON would
                key = str(key)
            if not isinstance(key, str):
                raise ConfigError(
                    f"keys must be names, got {key!r}", where=where, key=dotted(path) or None
                )
            if key in out:
                raise ConfigError(
                    f"duplicate key '{key}'",
                    where=where,
                    key=dotted(path + (key,)),
                    hint="YAML keeps only the last one; remove one of them",
                )
            self.source.positions[path + (key,)] = where
            out[key] = self.build(value_node, path + (key,), depth + 1)
        return out

    def _scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise ConfigError(
                "keys must be plain names, not lists or mappings",
                where=_location(node.start_mark, self.filename),
            )
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError:
            raise self._tag_error(node) from None

    def _check_tag(self, node: yaml.Node, expected: str) -> None:
        if node.tag != expected:
            raise self._tag_error(node)

    def _tag_error(self, node: yaml.Node) -> ConfigError:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        return ConfigError(
            f"YAML tag '{tag}' is not allowed",
            where=_location(node.start_mark, self.filename),
            hint="configs hold plain data only: names, numbers, strings, lists and mappings",
        )


def parse_yaml(text: str, filename: str) -> tuple[Any, SourceMap]:
    """Parse YAML text safely; return the data and where each key path was written."""
    if len(text.encode()) > MAX_BYTES:
        raise ConfigError(f"file is larger than {MAX_BYTES:,} bytes", where=Location(filename))
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, SourceMap()
        builder = _Builder(loader, filename)
        data = builder.build(node, ())
        return data, builder.source
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error, filename, text) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}", where=Location(filename)) from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Read and parse a YAML file, with a clear error when it is missing or unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "config file not found", where=Location(str(path)), hint="check the path"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config: {error}", where=Location(str(path))) from None
    return parse_yaml(text, str(path))
