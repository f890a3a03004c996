"""The config: load (extends, --set), validate against the schema, report errors by line. No TensorFlow."""

from __future__ import annotations

import copy
import difflib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from dltrain.errors import ConfigError, Location
from dltrain.yamlsource import Path_, SourceMap, dotted, parse_yaml, read_yaml

DATASET_NAMES = ("mnist", "fashion_mnist", "synthetic")


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...]) -> str | None:
    """A 'did you mean ...?' hint for a misspelt name, or None when nothing is close."""
    lowered = {c.lower(): c for c in candidates}
    if name.lower() in lowered:
        return f"did you mean '{lowered[name.lower()]}'?"
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        close = [lowered[c] for c in difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)]
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def split_spec(spec: str | dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Split a config entry (`Flatten` or `{Dense: {units: 8}}`) into its name and keyword arguments."""
    if isinstance(spec, str):
        return spec, {}
    (name, kwargs), = spec.items()
    return name, dict(kwargs or {})


def _check_spec(value: Any) -> Any:
    """Accept a bare name or a one-key mapping from a name to its keyword arguments."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and len(value) == 1:
        (name, kwargs), = value.items()
        if isinstance(kwargs, dict) or kwargs is None:
            return {name: kwargs or {}}
        raise PydanticCustomError(
            "spec_kwargs",
            "arguments of '{name}' must be a mapping like {example}, got {got}",
            {"name": name, "got": _short(kwargs), "example": "{units: 10}"},
        )
    raise PydanticCustomError(
        "spec",
        "expected a name like 'Dense' or a one-key mapping like {example}, got {got}",
        {"got": _short(value), "example": "{Dense: {units: 10}}"},
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# A bare name (`Flatten`, `adam`) or a one-key mapping from a Keras class name to its kwargs.
Spec = Annotated[str | dict[str, dict[str, Any]], BeforeValidator(_check_spec)]


def _check_threads(value: Any) -> Any:
    """Accept a thread count >= 0, "auto" or None (TensorFlow's own choice)."""
    if value is None or value == "auto" or (type(value) is int and value >= 0):
        return value
    raise PydanticCustomError("threads", "expected a thread count >= 0, 'auto' or null, got {got}",
                              {"got": _short(value)})


# A size for one of TensorFlow's thread pools (see TrainingConfig).
Threads = Annotated[int | Literal["auto"] | None, BeforeValidator(_check_threads)]


class Section(BaseModel):
    """A config section: unknown keys are errors with a suggestion, never silently dropped."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    hint = did_you_mean(str(key), list(cls.model_fields))
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key '{key}'",
                        {"key": str(key), "hint": hint or f"expected one of: {', '.join(cls.model_fields)}"},
                    )
        return data


class DatasetConfig(Section):
    """Where the examples come from and how they are split."""

    name: str
    validation_split: float = Field(0.1, ge=0.0, lt=1.0)
    data_dir: str | None = None
    train_size: int | None = Field(None, ge=1)
    test_size: int | None = Field(None, ge=1)
    # Only for `synthetic`: the shape of one example and the number of classes.
    input_shape: list[int] | None = None
    num_classes: int | None = Field(None, ge=2)

    @field_validator("name")
    @classmethod
    def _known_name(cls, name: str) -> str:
        if name not in DATASET_NAMES:
            raise PydanticCustomError(
                "unknown_dataset",
                "unknown dataset '{name}'",
                {"name": name, "hint": did_you_mean(name, DATASET_NAMES)
                 or f"expected one of: {', '.join(DATASET_NAMES)}"},
            )
        return name

    @model_validator(mode="after")
    def _synthetic_keys(self) -> DatasetConfig:
        if self.name != "synthetic":
            for key in ("input_shape", "num_classes"):
                if getattr(self, key) is not None:
                    raise PydanticCustomError(
                        "synthetic_only",
                        "'{key}' applies only to the synthetic dataset",
                        {"key": key, "hint": f"remove it; {self.name} knows its own {key}"},
                    )
        return self


class ModelConfig(Section):
    """The network: a list of Keras layers, optionally wired as a graph."""

    input_shape: list[int | None] | None = None
    inputs: dict[str, list[int | None]] | None = None
    layers: list[Spec] = Field(min_length=1)
    outputs: list[str] | None = None

    @model_validator(mode="after")
    def _one_way_to_give_inputs(self) -> ModelConfig:
        if self.input_shape is not None and self.inputs is not None:
            raise PydanticCustomError(
                "inputs_twice",
                "give either 'input_shape' or 'inputs', not both",
                {"hint": "use 'inputs' for a model with several named inputs"},
            )
        return self


class TrainingConfig(Section):
    """How `fit` runs. Keras's own argument names and defaults."""

    epochs: int = Field(1, ge=1)
    batch_size: int = Field(32, ge=1)
    callbacks: list[Spec] = Field(default_factory=list)
    shuffle: bool = True
    # None shuffles the whole training split (it is in memory), so every epoch sees a fresh order.
    shuffle_buffer: int | None = Field(None, ge=1)
    # Keras's default is 1; 50 halves the Fashion-MNIST MLP's epoch time on 2 CPU cores (4.9 s -> 2.0 s),
    # because small models are bound by per-step Python overhead, not by arithmetic.
    steps_per_execution: int = Field(50, ge=1)
    # Keras's "auto" turns XLA off on CPU-only machines and on with a GPU. On 2 CPU cores XLA made both
    # Fashion-MNIST configs slower (MLP 1.2 -> 5-6 s/epoch, CNN 6-8x; benchmarks/README.md).
    jit_compile: bool | Literal["auto"] = "auto"
    # true: tf.data keeps the decoded examples (and the fixed validation/test batches) in memory after the
    # first epoch, so later epochs skip slicing and batching (MLP 2.3 -> 1.8 s/epoch); a path: cache files
    # with that prefix, for data larger than memory; false: rebuild every epoch.
    cache: bool | str = True
    # mixed_bfloat16 / mixed_float16: Keras's mixed-precision policies. Off by default: accuracy can move
    # and the gain depends on the hardware (benchmarks/README.md has the CPU numbers).
    mixed_precision: Literal[False, "mixed_bfloat16", "mixed_float16"] = False
    # TensorFlow's thread pools (tf.config.threading); null keeps TensorFlow's choice (one per core). "auto"
    # gives a small Dense-only model one thread each, whose ops are too small to split (the MLP on 2 cores:
    # half the CPU time an epoch), and leaves a conv net every core (dltrain/threads.py has the rule).
    intra_op_parallelism_threads: Threads = "auto"
    inter_op_parallelism_threads: Threads = "auto"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class Config(Section):
    """A whole dltrain config file."""

    name: str = "run"
    # None: a fresh seed is drawn and written into the run's config.yaml, so every run reproduces.
    seed: int | None = None
    dataset: DatasetConfig
    model: ModelConfig
    loss: Spec
    optimizer: Spec = "adam"
    metrics: list[Spec] = Field(default_factory=list)
    training: TrainingConfig = Field(default_factory=TrainingConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise PydanticCustomError(
                "bad_name",
                "run name '{name}' is not allowed",
                {"name": name, "hint": "use letters, digits, '.', '_' and '-' (it becomes a folder name)"},
            )
        return name


@dataclass
class LoadedConfig:
    """A validated config with the data it came from and where each key was written."""

    config: Config
    source: SourceMap
    path: Path

    def locate(self, path: Path_) -> Location | None:
        """Where the key `path` (or its nearest parent) was written."""
        return self.source.locate(path)

    def error(self, cls: type[ConfigError], path: Path_, message: str, hint: str | None = None) -> ConfigError:
        """An error of type `cls` pointing at the key `path`."""
        return cls(message, where=self.locate(path), key=dotted(path), hint=hint)

    def resolved(self) -> dict[str, Any]:
        """The fully resolved config as plain data: what `config.yaml` in a run folder holds."""
        return _drop_none(self.config.model_dump(mode="json"))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# --- composition -----------------------------------------------------------------------------


def _merge(base: Any, top: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by the top value."""
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base.get(key), value) if key in base else value
        return merged
    return top


def _load_file(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], SourceMap]:
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
    base_path = (path.parent / base_name).resolve()
    if base_path in chain:
        cycle = " -> ".join(p.name for p in chain + (base_path,))
        raise ConfigError(f"'extends' forms a cycle: {cycle}", where=where, key="extends",
                          hint="remove one of the 'extends' lines")
    if not base_path.is_file():
        raise ConfigError(f"base config '{base_name}' not found", where=where, key="extends",
                          hint=f"the path is relative to {path.parent}")
    base, base_source = _load_file(base_path, chain + (base_path,))
    source.positions.pop(("extends",), None)
    base_source.update(source)
    return _merge(base, data), base_source


_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_key_path(text: str) -> Path_:
    """Parse `model.layers[2].Dense.units` into ('model', 'layers', 2, 'Dense', 'units')."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(text):
        if text[pos] == "." and parts and pos + 1 < len(text):
            pos += 1
        match = _KEY_PART.match(text, pos)
        if not match:
            raise ConfigError(f"cannot read key path '{text}'", where=Location("--set"),
                              hint="write it like training.epochs or model.layers[2].Dense.units")
        parts.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        pos = match.end()
    if not parts or not isinstance(parts[0], str):
        raise ConfigError(f"cannot read key path '{text}'", where=Location("--set"),
                          hint="write it like training.epochs=3")
    return tuple(parts)


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


# --- validation ------------------------------------------------------------------------------

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


def _message(err: dict[str, Any]) -> tuple[str, str | None]:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = err.get("input")
    if kind == "list_type" and isinstance(got, str):
        return f"expected a list, got {_short(got)}", f"write [{got}]"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_short(got)}", None
    if kind == "missing":
        return "required key is missing", None
    if kind in ("greater_than_equal", "greater_than", "less_than", "less_than_equal"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(v for k, v in ctx.items() if k in ("ge", "gt", "lt", "le"))
        return f"expected a number {op} {bound}, got {_short(got)}", None
    if kind == "too_short":
        return "must not be empty", None
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}, got {_short(got)}", None
    return err["msg"].removeprefix("Value error, "), ctx.get("hint")


def _to_config_error(error: ValidationError, source: SourceMap, file: Path) -> ConfigError:
    """Turn pydantic's errors into one ConfigError about the first problem in file order."""
    found: list[tuple[Path_, str, str | None]] = []
    for err in error.errors():
        # pydantic adds the union branch (`str`, `dict[...]`) to the location; users never wrote it.
        path = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in ("str", "bool"))))
        ctx = err.get("ctx") or {}
        if "key" in ctx:  # errors raised for one key of a section point at that key
            path = path + (ctx["key"],)
        message, hint = _message(err)
        found.append((path, message, hint))

    def order(item: tuple[Path_, str, str | None]) -> tuple[int, int]:
        loc = source.locate(item[0])
        return (loc.line or 0, loc.column or 0) if loc else (0, 0)

    found.sort(key=order)
    path, message, hint = found[0]
    if len(found) > 1:
        more = len(found) - 1
        hint = (hint + "; " if hint else "") + f"{more} more error{'s' if more > 1 else ''} after this one"
    where = source.locate(path) or Location(str(file))
    return ConfigError(message, where=where, key=dotted(path) or None, hint=hint)


def validate(data: dict[str, Any], source: SourceMap, path: Path) -> LoadedConfig:
    """Validate plain config data against the schema; fill a seed when none is given."""
    try:
        config = Config.model_validate(data)
    except ValidationError as error:
        raise _to_config_error(error, source, path) from None
    if config.seed is None:
        config.seed = secrets.randbelow(2**31)
    loaded = LoadedConfig(config, source, path)
    check_graph(loaded)
    return loaded


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedConfig:
    """Load a config file: resolve `extends`, apply `--set` overrides, validate."""
    path = Path(path)
    data, source = _load_file(path, (path.resolve(),))
    data = copy.deepcopy(data)
    for override in overrides:
        apply_override(data, source, override)
    return validate(data, source, path)


# --- graph checks ----------------------------------------------------------------------------


def layer_refs(kwargs: dict[str, Any]) -> list[str] | None:
    """The `inputs:` a layer names, as a list, or None when it takes the previous layer."""
    refs = kwargs.get("inputs")
    if refs is None:
        return None
    return [refs] if isinstance(refs, str) else list(refs)


def check_graph(loaded: LoadedConfig) -> None:
    """Check layer names and `inputs:` / `outputs:` references without building anything."""
    model = loaded.config.model
    input_names = list(model.inputs) if model.inputs else ["input"]
    defined: dict[str, int] = {}
    later = {}
    for i, spec in enumerate(model.layers):
        _, kwargs = split_spec(spec)
        name = kwargs.get("name")
        if isinstance(name, str):
            later.setdefault(name, i)
    used: set[str] = set()
    previous: str | None = input_names[0] if len(input_names) == 1 else None
    for i, spec in enumerate(model.layers):
        class_name, kwargs = split_spec(spec)
        path: Path_ = ("model", "layers", i, class_name)
        refs = layer_refs(kwargs)
        if refs is None:
            if previous is None:
                raise loaded.error(ConfigError, path, "this layer needs 'inputs:'",
                                   hint=f"the model has several inputs: {', '.join(input_names)}")
            refs = [previous]
        elif not refs or not all(isinstance(r, str) for r in refs):
            raise loaded.error(ConfigError, path + ("inputs",), "expected a layer name or a list of names")
        for ref in refs:
            if ref in defined or ref in input_names:
                used.add(ref)
                continue
            if ref in later:
                raise loaded.error(ConfigError, path + ("inputs",),
                                   f"layer '{ref}' is defined later (model.layers[{later[ref]}])",
                                   hint="a layer can only take earlier layers as inputs")
            hint = did_you_mean(ref, list(defined) + input_names) or "name an earlier layer with 'name:'"
            raise loaded.error(ConfigError, path + ("inputs",), f"no layer or input named '{ref}'", hint=hint)
        name = kwargs.get("name")
        key = name if isinstance(name, str) else f"#{i}"
        if name is not None and not isinstance(name, str):
            raise loaded.error(ConfigError, path + ("name",), f"expected a string, got {_short(name)}")
        if key in defined or key in input_names:
            raise loaded.error(ConfigError, path + ("name",), f"the name '{key}' is used twice",
                               hint="layer names must be unique")
        defined[key] = i
        previous = key
    outputs = model.outputs or [previous]
    for j, out in enumerate(outputs):
        if out not in defined:
            hint = did_you_mean(out, [n for n in defined if not n.startswith("#")])
            raise loaded.error(ConfigError, ("model", "outputs", j), f"no layer named '{out}'", hint=hint)
    unused = [n for n in list(defined) + input_names if n not in used and n not in outputs]
    if unused:
        first = unused[0]
        if first in input_names:
            raise loaded.error(ConfigError, ("model", "inputs", first) if model.inputs else ("model",),
                               f"model input '{first}' feeds no layer", hint="use it in a layer's 'inputs:'")
        i = defined[first]
        label = f"'{first}'" if not first.startswith("#") else f"model.layers[{i}]"
        class_name, _ = split_spec(model.layers[i])
        raise loaded.error(ConfigError, ("model", "layers", i, class_name),
                           f"layer {label} is never used: it feeds no layer and is not in model.outputs",
                           hint="list it in model.outputs or remove it")
