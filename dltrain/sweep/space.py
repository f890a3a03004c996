"""The search space: each `sweep.parameters` key as an Optuna distribution, every value checked first.

No TensorFlow and no Optuna import here: a trial object is passed in to sample from.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from dltrain.config import Config, LoadedConfig, Section, SweepParameter, apply_override, did_you_mean, \
    parse_key_path, validate
from dltrain.config import Path_, SourceMap, dotted, parse_yaml
from dltrain.errors import ConfigError, DltrainError

PARAMETERS: Path_ = ("sweep", "parameters")
_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Parameter:
    """One swept key, as written (`optimizer.Adam.learning_rate`), with its range."""

    key: str
    path: Path_
    spec: SweepParameter

    @property
    def at(self) -> Path_:
        """Where the parameter is written in the config."""
        return PARAMETERS + (self.key,)

    @property
    def encoded(self) -> bool:
        """Optuna's categorical choices are scalars: lists and mappings travel as their JSON text."""
        return any(not isinstance(v, _SCALARS) for v in self.spec.values or ())

    def choices(self) -> list[Any]:
        """The categorical choices as Optuna stores them."""
        return [json.dumps(v) if self.encoded else v for v in self.spec.values or ()]

    def decode(self, stored: Any) -> Any:
        """A value as Optuna stores it -> the config value."""
        return json.loads(stored) if self.encoded and isinstance(stored, str) else stored

    def candidates(self) -> list[tuple[Path_, Any]]:
        """Every value a trial can take that a check must try: each of `values`, or both ends of a range."""
        spec = self.spec
        if spec.values is not None:
            return [(("values", i), v) for i, v in enumerate(spec.values)]
        low, high = (math.exp(spec.min), math.exp(spec.max)) if spec.kind == "log_uniform" else (spec.min, spec.max)
        return [(("min",), low), (("max",), high)]

    def suggest(self, trial: Any) -> Any:
        """Sample this parameter in an Optuna trial; return the config value."""
        spec, key = self.spec, self.key
        kind = spec.kind
        if kind == "categorical":
            return self.decode(trial.suggest_categorical(key, self.choices()))
        if kind == "int_uniform":
            return trial.suggest_int(key, spec.min, spec.max, step=spec.q or 1)
        if kind == "q_uniform":
            return trial.suggest_float(key, spec.min, spec.max, step=spec.q)
        if kind == "log_uniform_values" and type(spec.min) is int and type(spec.max) is int:
            return trial.suggest_int(key, spec.min, spec.max, log=True)
        if kind in ("log_uniform", "log_uniform_values"):
            (_, low), (_, high) = self.candidates()
            return trial.suggest_float(key, low, high, log=True)
        return trial.suggest_float(key, float(spec.min), float(spec.max))


@dataclass
class Space:
    """The swept parameters in the order written."""

    parameters: list[Parameter]

    def keys(self) -> list[str]:
        """The parameter keys as written: the leaderboard's columns."""
        return [p.key for p in self.parameters]

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Sample every parameter in a trial: key -> config value."""
        return {p.key: p.suggest(trial) for p in self.parameters}

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored params -> config values."""
        by_key = {p.key: p for p in self.parameters}
        return {k: by_key[k].decode(v) if k in by_key else v for k, v in params.items()}

    def grid(self, count: int) -> list[dict[str, Any]]:
        """The first `count` grid points in the order written (the last key varies fastest), as Optuna stores them."""
        points = itertools.product(*(p.choices() for p in self.parameters))
        return [dict(zip(self.keys(), point)) for point in itertools.islice(points, count)]


def value_text(value: Any) -> str:
    """A value as `--set` takes it: YAML that reads back as the same value."""
    if isinstance(value, str) and parse_yaml(value, "--set")[0] == value:
        return value
    return json.dumps(value)


def overrides(values: dict[str, Any]) -> list[str]:
    """A trial's values as `--set` lines (its run folder's overrides.txt)."""
    return [f"{key}={value_text(value)}" for key, value in values.items()]


def _applied(loaded: LoadedConfig, override: str) -> tuple[dict[str, Any], SourceMap]:
    """The config data as written, without its sweep section, with one more `--set` override.

    Its blocks are already expanded into model.layers (as in every trial's config.yaml): `blocks:` goes too."""
    data = copy.deepcopy(loaded.written)
    data.pop("sweep", None)
    data.pop("blocks", None)
    source = SourceMap(dict(loaded.source.positions), dict(loaded.source.aliases))
    apply_override(data, source, override)
    return data, source


def variant(loaded: LoadedConfig, override: str) -> LoadedConfig:
    """The config with one more `--set` override and without its sweep section, validated; the user's word
    on its code (trust_code) is the config's."""
    data, source = _applied(loaded, override)
    found = validate(data, source, loaded.path)
    found.trust_code = loaded.trust_code
    return found


def located(loaded: LoadedConfig, at: Path_, error: DltrainError, path: Path_) -> ConfigError:
    """An error met while trying a parameter's value, moved to where the sweep section wrote it."""
    message = error.message if error.key in (None, dotted(path)) else f"{error.key}: {error.message}"
    return loaded.error(ConfigError, at, message, hint=error.hint)


def _unknown_schema_key(path: Path_) -> tuple[int, str | None] | None:
    """(index, hint) of the first part of `path` that no config section has; None when the schema knows it.

    Below a section the config is free-form (Keras arguments, list items); Keras checks those (checks.py)."""
    section: type[BaseModel] = Config
    for i, part in enumerate(path):
        if not isinstance(part, str) or part not in section.model_fields:
            names = list(section.model_fields)
            return i, did_you_mean(str(part), names) or f"expected one of: {', '.join(names)}"
        annotation = section.model_fields[part].annotation
        inner = [a for a in (typing.get_args(annotation) if isinstance(annotation, types.UnionType)
                             or typing.get_origin(annotation) is typing.Union else (annotation,))
                 if isinstance(a, type) and issubclass(a, Section)]
        if not inner:
            return None
        section = inner[0]
    return None


def check_space(loaded: LoadedConfig) -> Space:
    """Check every parameter key and value of the sweep section against the schema; return the space."""
    sweep = loaded.config.sweep
    if sweep is None:
        raise ConfigError(f"{loaded.path} has no 'sweep:' section", hint="add one: README, 'Sweeps'")
    parameters = []
    for key, spec in sweep.parameters.items():
        at = PARAMETERS + (key,)
        try:
            path = parse_key_path(key)
        except ConfigError as error:
            raise loaded.error(ConfigError, at, error.message, hint=error.hint) from None
        if path[0] == "sweep":
            raise loaded.error(ConfigError, at, "a sweep cannot sweep its own section",
                               hint="sweep keys of the training config: optimizer..., training..., model...")
        if path[0] == "blocks":
            raise loaded.error(ConfigError, at, "blocks are expanded into model.layers before any trial runs",
                               hint="sweep the expanded layer's key, as `dltrain config` prints it "
                                    "(model.layers[N]...)")
        unknown = _unknown_schema_key(path)
        if unknown is not None:
            i, hint = unknown
            owner = f"'{dotted(path[:i])}'" if i else "the config"
            raise loaded.error(ConfigError, at, f"not a config key: {owner} has no key '{path[i]}'", hint=hint)
        parameter = Parameter(key, path, spec)
        for where, value in parameter.candidates():
            try:  # setting the key fails on the key itself (an index out of range, not a mapping)
                data, source = _applied(loaded, f"{key}={value_text(value)}")
            except ConfigError as error:
                raise located(loaded, at, error, path) from None
            try:
                validate(data, source, loaded.path)
            except ConfigError as error:
                raise located(loaded, at + where, error, path) from None
        parameters.append(parameter)
    return Space(parameters)
