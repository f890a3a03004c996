"""A config file read end to end: compose, fill in references, validate, check the graph. No TensorFlow."""

from __future__ import annotations

import copy
import secrets
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from dltrain.config.blocks import expand_blocks
from dltrain.config.compose import apply_override, load_file
from dltrain.config.dataset import DatasetConfig
from dltrain.config.fields import Section
from dltrain.config.graph import check_graph
from dltrain.config.loaded import LoadedConfig, data_errors_located
from dltrain.config.messages import to_config_error
from dltrain.config.references import DATA_FACTS, Resolver
from dltrain.config.schema import Config
from dltrain.config.split_sources import check_split_sources
from dltrain.config.yamlsource import Path_, SourceMap, dotted
from dltrain.errors import ConfigError


def schema_default(path: Path_) -> tuple[bool, Any]:
    """The default the schema gives the key `path` (found, value); not found for required keys."""
    section: type[BaseModel] = Config
    for i, part in enumerate(path):
        info = section.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            return False, None
        if i == len(path) - 1:
            if info.is_required():
                return False, None
            value = info.get_default(call_default_factory=True)
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            return value is not None, value
        if not (isinstance(info.annotation, type) and issubclass(info.annotation, Section)):
            return False, None
        section = info.annotation
    return False, None


# What a dataset can tell about itself (data.describe): config/ is below data/, so it is handed in.
Describe = Callable[[DatasetConfig], Any]


class _DatasetFacts:
    """`${dataset.num_classes}` and friends: asked of the dataset only when a config refers to them."""

    def __init__(self, source: SourceMap, path: Path, describe: Describe | None) -> None:
        self.source = source
        self.path = path
        self.describe = describe
        self.resolver: Resolver | None = None  # set once the resolver that asks exists
        self.info: Any = None

    def __call__(self, target: Path_) -> tuple[bool, Any]:
        if len(target) != 2 or target[0] != "dataset" or target[1] not in DATA_FACTS:
            return False, None
        if self.info is None:
            section = self.resolver.resolve_subtree(("dataset",))
            try:
                dataset = DatasetConfig.model_validate(section)
            except ValidationError as error:
                raise to_config_error(error, self.source, self.path, ("dataset",)) from None
            if self.describe is None:
                raise ConfigError(f"'${{{dotted(target)}}}' needs the dataset, which is not read here",
                                  where=self.source.locate(("dataset",)), key=dotted(target),
                                  hint="load the config with dltrain.load.load_config, or write the value")
            with data_errors_located(self.source):  # as a config error would
                self.info = self.describe(dataset)
        value = getattr(self.info, str(target[1]))
        if value is None:
            raise ConfigError(f"dataset '{self.info.name}' does not know its {target[1]}",
                              where=self.source.locate(("dataset",)), key=dotted(target),
                              hint="write the value instead of the reference")
        return True, list(value) if isinstance(value, tuple) else value


def resolve_references(data: dict[str, Any], source: SourceMap, path: Path,
                       describe: Describe | None = None) -> dict[Path_, str]:
    """Resolve every `${...}` in `data` in place; return the keys that held references."""
    facts = _DatasetFacts(source, path, describe)
    resolver = facts.resolver = Resolver(data, source, schema_default, facts)
    resolver.resolve_all()
    return resolver.references


def validate(data: dict[str, Any], source: SourceMap, path: Path,
             references: dict[Path_, str] | None = None) -> LoadedConfig:
    """Expand blocks, validate plain config data against the schema; fill a seed when none is given."""
    expansion = expand_blocks(data, source, path, references)
    written = copy.deepcopy(data)
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise to_config_error(error, source, path) from None
    if config.seed is None:
        config.seed = secrets.randbelow(2**31)
    loaded = LoadedConfig(config, source, path, references or {}, written,
                          origins=expansion.origins if expansion else {})
    if config.model.task is None:  # a KerasHub task brings its own graph
        check_graph(loaded)
    check_split_sources(loaded)
    return loaded


def read_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                describe: Describe | None = None, trust_code: bool = False) -> LoadedConfig:
    """Read a config file: resolve `extends`, apply `--set` overrides and `${...}` references, validate.

    `describe` answers `${dataset.*}` references; dltrain.load.load_config passes the data layer's.
    `trust_code` is the user's word that the code the config names may run (dltrain.trust)."""
    path = Path(path)
    data, source = load_file(path, (path.resolve(),))
    data = copy.deepcopy(data)
    for override in overrides:
        apply_override(data, source, override)
    references = resolve_references(data, source, path, describe)
    loaded = validate(data, source, path, references)
    loaded.overrides = list(overrides)
    loaded.trust_code = trust_code
    return loaded
