"""A validated config together with where each of its keys was written."""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dltrain.config.schema import Config
from dltrain.config.yamlsource import Path_, SourceMap
from dltrain.errors import ConfigError, DataError, Location


@contextmanager
def data_errors_located(source: SourceMap) -> Iterator[None]:
    """Data errors name a config key (dataset.path, dataset.label, ...): point them at the line it is on."""
    try:
        yield
    except DataError as error:
        if error.where is None and error.key:
            error.where = source.locate(tuple(error.key.split(".")))
        raise


@dataclass
class LoadedConfig:
    """A validated config with the data it came from and where each key was written."""

    config: Config
    source: SourceMap
    path: Path
    # The key paths that held `${...}` references, with the text the user wrote.
    references: dict[Path_, str] = field(default_factory=dict)
    # The data as written (after extends, --set and references), before defaults were filled in.
    written: dict[str, Any] = field(default_factory=dict)
    # The `--set` overrides, as given (a run folder keeps them in overrides.txt).
    overrides: list[str] = field(default_factory=list)
    # Whether the user trusts the config's code (--trust-code): without it, nothing it names is imported and
    # no model is loaded with safe_mode off (dltrain.trust.require_trust).
    trust_code: bool = False
    # Keys of expanded block layers whose value a block gave (`$filters` from a use or a default), and whence.
    origins: dict[Path_, str] = field(default_factory=dict)
    # `custom_objects`, once imported (registry.custom_objects): every Keras name lookup consults them.
    imported: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def locate(self, path: Path_) -> Location | None:
        """Where the key `path` (or its nearest parent) was written."""
        return self.source.locate(path)

    def located(self) -> AbstractContextManager[None]:
        """A context in which data errors point at the config line of the key they name."""
        return data_errors_located(self.source)

    def error(self, cls: type[ConfigError], path: Path_, message: str, hint: str | None = None) -> ConfigError:
        """An error of type `cls` pointing at the key `path`."""
        return cls(message, where=self.locate(path), key=self.source.key(path), hint=hint)

    def resolved(self) -> dict[str, Any]:
        """The fully resolved config as plain data: what `config.yaml` in a run folder holds."""
        data = self.config.model_dump(mode="json")
        data["dataset"] = self.config.dataset.dump()
        data.pop("blocks", None)  # expanded into model.layers: the layers are what runs
        if self.config.training.phases is not None:
            data["training"].pop("epochs")  # the phases' sum; a file with both is refused
        return _drop_none(data)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
