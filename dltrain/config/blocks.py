"""`blocks:`: layers defined once, with parameters, and used in `model.layers` like a layer.

Before validation every use becomes the block's layers, one after the other, so the rest of dltrain sees
plain Keras layers. Names inside a block are local to each use: a use gets a prefix (`identity_1`, or its
`name:`) and its layers are called `identity_1_main`, `identity_1_conv2d`, ... Every expanded layer keeps
where it was written (SourceMap.aliases): a mistake in it points at the block's line and at the use.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from dltrain.config.fields import split_spec
from dltrain.config.hints import did_you_mean, short
from dltrain.config.messages import to_config_error
from dltrain.config.schema import BlockConfig
from dltrain.config.yamlsource import Path_, SourceMap, Written, dotted
from dltrain.errors import ConfigError, Location

_TOKEN = re.compile(r"\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OUTPUT = re.compile(r"^(.+)\.(\d+)$")
# What a use takes besides the block's parameters.
USE_KEYS = ("name", "inputs", "repeat")
INPUT = "input"  # `$input`: the tensor the block was given
# Nested repeats multiply; a config that expands past this is a mistake, not a model.
MAX_LAYERS = 10_000


def snake_case(name: str) -> str:
    """A class name as Keras names its layers (`BatchNormalization` -> `batch_normalization`)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


@dataclass
class Expansion:
    """The model's layers with every block use replaced by the block's layers."""

    layers: list[Any]
    # model.layers[j] -> where it was written and the uses around it.
    aliases: dict[Path_, Written]
    # Keys of the expanded layers whose value a block gave: `$filters` from a use or a default, a name.
    origins: dict[Path_, str]


@dataclass
class _Scope:
    """One use of a block while its layers are expanded (or model.layers itself: block None)."""

    block: str | None = None
    prefix: str | None = None
    params: dict[str, tuple[Any, str]] = field(default_factory=dict)  # value, where it came from
    input: str | int | None = None  # a layer name, or the index of an expanded layer not yet named
    within: tuple[str, ...] = ()
    names: dict[str, str] = field(default_factory=dict)  # local name -> the layer's name in the model
    counts: dict[str, int] = field(default_factory=dict)  # uses of each block here, for their prefixes

    def qualify(self, local: str) -> str:
        return local if self.prefix is None else f"{self.prefix}_{local}"


def _check_blocks(raw: dict[str, Any], source: SourceMap, file: Any) -> dict[str, BlockConfig]:
    blocks = {}
    for name, body in raw.items():
        if not _IDENTIFIER.match(str(name)):
            raise ConfigError(f"block name '{name}' is not an identifier", where=source.locate(("blocks", name)),
                              key=dotted(("blocks", name)), hint="use letters, digits and '_' (it prefixes layer names)")
        try:
            blocks[name] = BlockConfig.model_validate(body)
        except ValidationError as error:
            raise to_config_error(error, source, file, ("blocks", name)) from None
        for param in blocks[name].params:
            path = ("blocks", name, "params", param)
            if param == INPUT:
                raise ConfigError("'input' cannot be a parameter: $input is the tensor the block is given",
                                  where=source.locate(path), key=dotted(path), hint="rename the parameter")
            if not _IDENTIFIER.match(param):
                raise ConfigError(f"parameter name '{param}' is not an identifier", where=source.locate(path),
                                  key=dotted(path), hint="use letters, digits and '_': it is written $name")
    return blocks


def _block_uses(blocks: dict[str, BlockConfig]) -> dict[str, list[tuple[int, str]]]:
    return {name: [(k, split_spec(spec)[0]) for k, spec in enumerate(block.layers)
                   if split_spec(spec)[0] in blocks] for name, block in blocks.items()}


def _check_cycles(blocks: dict[str, BlockConfig], source: SourceMap) -> None:
    """A block that uses itself, directly or through others, would never end."""
    uses = _block_uses(blocks)

    def walk(name: str, trail: list[str]) -> list[str] | None:
        for _, used in uses[name]:
            if used == trail[0]:
                return trail + [used]
            if used not in trail and (found := walk(used, trail + [used])):
                return found
        return None

    for name in blocks:
        cycle = walk(name, [name])
        if cycle:
            k = next(k for k, used in uses[name] if used == cycle[1])
            path = ("blocks", name, "layers", k, cycle[1])
            message = f"block '{name}' uses itself" if len(cycle) == 2 else \
                f"blocks use each other in a cycle: {' -> '.join(cycle)}"
            raise ConfigError(message, where=source.locate(path), key=dotted(path),
                              hint="a block cannot contain itself; `repeat:` applies a block several times")


class _Expander:
    def __init__(self, blocks: dict[str, BlockConfig], source: SourceMap, references: dict[Path_, str],
                 inputs: list[str], keras_names: set[str]) -> None:
        self.blocks = blocks
        self.source = source
        self.references = references
        self.model_inputs = inputs
        self.layers: list[Any] = []
        self.aliases: dict[Path_, Written] = {}
        self.origins: dict[Path_, str] = {}
        self.taken: set[str] = set(inputs)
        self.used: set[str] = set()
        # Keras's own names (`embedding`) that an unnamed layer a block's $input takes can be given: its class
        # has no other unnamed layer among the model's own, which Keras would name the same, and no layer of
        # the model is called that.
        self.keras_names = keras_names
        # What a layer without `inputs:` takes: a name, an expanded layer's index, or None (several inputs).
        self.previous: str | int | None = inputs[0] if len(inputs) == 1 else None

    # --- messages -------------------------------------------------------------------------------------
    def _where(self, path: Path_, scope: _Scope) -> Location | None:
        found = self.source.locate(path)
        return replace(found, within=found.within + scope.within) if found is not None and scope.within else found

    def _error(self, path: Path_, scope: _Scope, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, where=self._where(path, scope), key=dotted(path), hint=hint)

    def _origin(self, param: str, path: Path_, scope: _Scope | None = None, default: bool = False) -> str:
        where = self._where(path, scope or _Scope())
        place = f"{self.references[path]} at {where}" if path in self.references else str(where)
        return f"${param} from {dotted(path)}{' (the block default)' if default else ''}: {place}"

    # --- names ----------------------------------------------------------------------------------------
    def _layer_name(self, index: int) -> str | None:
        spec = self.layers[index]
        name = split_spec(spec)[1].get("name") if isinstance(spec, (str, dict)) and _well_formed(spec) else None
        return name if isinstance(name, str) else None

    def _set_name(self, index: int, name: str, origin: str) -> None:
        class_name, kwargs = split_spec(self.layers[index])
        self.layers[index] = {class_name: {"name": name, **{k: v for k, v in kwargs.items() if k != "name"}}}
        self.taken.add(name)
        self.origins[("model", "layers", index, class_name, "name")] = origin

    def _name_of(self, ref: str | int, scope: _Scope) -> str:
        """The name of the tensor `ref`; an unnamed model layer a block takes is named after the use."""
        if isinstance(ref, str):
            return ref
        found = self._layer_name(ref)
        if found is None:
            keras_name = snake_case(split_spec(self.layers[ref])[0])
            found = keras_name if keras_name in self.keras_names and keras_name not in self.taken \
                else f"{scope.prefix}_{INPUT}"
            self._set_name(ref, found, f"named for $input of {scope.prefix}")
        return found

    def _generated(self, scope: _Scope, class_name: str) -> str:
        base = scope.qualify(snake_case(class_name))
        name, n = base, 0
        while name in self.taken:  # as Keras numbers its own: conv2d, conv2d_1, ...
            n += 1
            name = f"{base}_{n}"
        return name

    # --- values ---------------------------------------------------------------------------------------
    def _param(self, name: str, path: Path_, scope: _Scope) -> tuple[Any, str]:
        if name == INPUT and scope.input is not None:  # a use always has an input (else _use refused it)
            return self._name_of(scope.input, scope), f"$input of {scope.prefix}"
        if name in scope.params:
            return scope.params[name]
        params = ["$" + p for p in scope.params]
        hint = did_you_mean("$" + name, params) or (
            f"its parameters are: {', '.join(params)}" if params else f"add it under blocks.{scope.block}.params")
        raise self._error(path, scope, f"'${name}' is not a parameter of block '{scope.block}'", hint=hint)

    def _each(self, value: Any, path: Path_, rel: Path_, leaf: Any) -> Any:
        """`value` with `leaf(item, path, rel)` applied to each item inside its mappings and lists."""
        if isinstance(value, dict):
            return {k: self._each(v, path + (k,), rel + (k,), leaf) for k, v in value.items()}
        if isinstance(value, list):
            return [self._each(v, path + (i,), rel + (i,), leaf) for i, v in enumerate(value)]
        return leaf(value, path, rel)

    def _substitute(self, value: Any, path: Path_, scope: _Scope, origins: dict[Path_, str], rel: Path_) -> Any:
        """`$param` and `$input` replaced in a value written inside a block; `$$` is a `$`."""
        return self._each(value, path, rel, lambda item, at, where: self._text(item, at, scope, origins, where))

    def _text(self, value: Any, path: Path_, scope: _Scope, origins: dict[Path_, str], rel: Path_) -> Any:
        if not isinstance(value, str) or "$" not in value:
            return value
        whole = _TOKEN.fullmatch(value)
        if whole and whole.group(1):  # the whole value: it keeps its type (`filters: $filters` is a number)
            found, origin = self._param(whole.group(1), path, scope)
            origins[rel] = origin
            return copy.deepcopy(found)
        sources: list[str] = []

        def one(match: re.Match[str]) -> str:
            if match.group(1) is None:
                return "$"
            found, origin = self._param(match.group(1), path, scope)
            if isinstance(found, (dict, list)):
                raise self._error(path, scope, f"'${match.group(1)}' is a {type(found).__name__} and cannot be "
                                  "part of a string", hint="use it as the whole value")
            sources.append(origin)
            return str(found)

        text = _TOKEN.sub(one, value)
        if sources:
            origins[rel] = sources[0]
        return text

    def _ref(self, ref: Any, path: Path_, scope: _Scope, origins: dict[Path_, str], rel: Path_) -> Any:
        """One name in a block's `inputs:`: a local layer, `$input`, a parameter, or a model layer."""
        if not isinstance(ref, str) or scope.block is None:
            return ref
        if "$" in ref:
            return self._substitute(ref, path, scope, origins, rel)
        match = _OUTPUT.match(ref)
        base, index = (match.group(1), "." + match.group(2)) if match and ref not in scope.names else (ref, "")
        if base in scope.names:
            return scope.names[base] + index
        if base in self.taken:
            return ref
        hint = did_you_mean(base, [*scope.names, "$input"]) or "name an earlier layer of the block, or write $input"
        raise self._error(path, scope, f"no earlier layer named '{base}' in block '{scope.block}'", hint=hint)

    def _inputs(self, value: Any, path: Path_, scope: _Scope, origins: dict[Path_, str], rel: Path_) -> Any:
        return self._each(value, path, rel, lambda item, at, where: self._ref(item, at, scope, origins, where))

    # --- layers ---------------------------------------------------------------------------------------
    def expand_list(self, specs: list[Any], at: Path_, scope: _Scope) -> None:
        for k, spec in enumerate(specs):
            self._one(spec, at + (k,), scope)

    def _one(self, spec: Any, path: Path_, scope: _Scope) -> None:
        if not _well_formed(spec):  # validation says what is wrong with it
            self._emit(spec, path, scope, {})
            return
        name, kwargs = split_spec(spec)
        origins: dict[Path_, str] = {}
        if scope.block is not None:
            kwargs = {key: self._inputs(value, path + (name, key), scope, origins, (key,)) if key == "inputs"
                      else self._substitute(value, path + (name, key), scope, origins, (key,))
                      for key, value in kwargs.items()}
        if name in self.blocks:
            self._use(name, kwargs, path, scope, origins)
            return
        if self.blocks and name[:1].islower() and (hint := did_you_mean(name, list(self.blocks))):
            raise self._error(path + (name,), scope, f"unknown block '{name}'", hint=hint)
        if scope.block is not None:
            local = kwargs.get("name")
            if local is None:
                full = self._generated(scope, name)
                origins[("name",)] = f"named after the block use {scope.prefix}"
            elif isinstance(local, str):
                full = scope.qualify(local)
                scope.names[local] = full
            else:
                raise self._error(path + (name, "name"), scope, f"expected a string, got {short(local)}")
            kwargs = {"name": full, **{k: v for k, v in kwargs.items() if k != "name"}}
        elif not kwargs and isinstance(spec, str):
            kwargs = None
        self._emit({name: kwargs} if kwargs is not None else name, path, scope, origins)

    def _emit(self, spec: Any, path: Path_, scope: _Scope, origins: dict[Path_, str]) -> None:
        index = len(self.layers)
        if index >= MAX_LAYERS:
            raise self._error(path, scope, f"the blocks expand to more than {MAX_LAYERS:,} layers",
                              hint="check the repeat: counts")
        if _well_formed(spec) and split_spec(spec)[1].get("inputs") is None and self.previous is not None \
                and not self._is_default_input(self.previous):
            # The layer before it in the expanded list is not what it takes (a use with `inputs:`).
            class_name, kwargs = split_spec(spec)
            spec = {class_name: {**kwargs, "inputs": self._name_of(self.previous, scope)}}
            origins = {**origins, ("inputs",): f"the input of block use {scope.prefix}"}
        self.layers.append(spec)
        self.aliases[("model", "layers", index)] = (path, scope.within)
        if _well_formed(spec):
            class_name, kwargs = split_spec(spec)
            for rel, text in origins.items():
                self.origins[("model", "layers", index, class_name) + rel] = text
            if isinstance(kwargs.get("name"), str):
                self.taken.add(kwargs["name"])
        self.previous = index

    def _is_default_input(self, ref: str | int) -> bool:
        """Whether a layer without `inputs:` appended now takes `ref` (the last layer, or the model input)."""
        last = len(self.layers) - 1
        if last < 0:
            return len(self.model_inputs) == 1 and ref == self.model_inputs[0]
        return ref == last or (isinstance(ref, str) and ref == self._layer_name(last))

    def _use(self, block_name: str, kwargs: dict[str, Any], path: Path_, scope: _Scope,
             given: dict[Path_, str]) -> None:
        block = self.blocks[block_name]
        at = path + (block_name,)
        for key in kwargs:
            if key not in block.params and key not in USE_KEYS:
                hint = did_you_mean(key, [*block.params, *USE_KEYS]) or (
                    f"block '{block_name}' takes: {', '.join(block.params)}" if block.params else
                    f"block '{block_name}' has no parameters")
                raise self._error(at + (key,), scope, f"unknown parameter '{key}' of block '{block_name}'", hint=hint)
        repeat = kwargs.get("repeat", 1)
        if type(repeat) is not int or repeat < 1:
            raise self._error(at + ("repeat",), scope, f"repeat must be a whole number >= 1, got {short(repeat)}",
                              hint="repeat: 2 applies the block twice, one after the other")
        name = kwargs.get("name")
        if name is not None and not (isinstance(name, str) and name):
            raise self._error(at + ("name",), scope, f"expected a string, got {short(name)}")
        inputs = kwargs.get("inputs")
        if inputs is not None:
            refs = [inputs] if isinstance(inputs, str) else inputs
            if not isinstance(refs, list) or len(refs) != 1 or not isinstance(refs[0], str):
                raise self._error(at + ("inputs",), scope, f"a block takes one input, got {short(inputs)}",
                                  hint="its layers can take more with `inputs:` inside the block")
            self.previous = refs[0]
        elif self.previous is None:
            raise self._error(at, scope, "this block needs 'inputs:'",
                              hint=f"the model has several inputs: {', '.join(self.model_inputs)}")
        params = {}
        for param, default in block.params.items():
            if param in kwargs:
                params[param] = (kwargs[param], given.get((param,)) or self._origin(param, at + (param,), scope))
            else:
                params[param] = (default, self._origin(param, ("blocks", block_name, "params", param),
                                                         default=True))
        where = self.source.locate(path)
        within = (f"block '{block_name}' used at {where}",) + scope.within
        self.used.add(block_name)
        for r in range(1, repeat + 1):
            if name:
                local = name if repeat == 1 else f"{name}_{r}"
            else:
                scope.counts[block_name] = scope.counts.get(block_name, 0) + 1
                local = f"{block_name}_{scope.counts[block_name]}"
            child = _Scope(block_name, scope.qualify(local), params, self.previous, within)
            self.expand_list(block.layers, ("blocks", block_name, "layers"), child)
        if name:
            self._set_name(len(self.layers) - 1, scope.qualify(name), str(self._where(at + ("name",), scope)))
            scope.names[name] = scope.qualify(name)

    def check_unused(self) -> None:
        """A `$name` a block does not have is a mistake even while no layer uses the block."""
        for name, block in self.blocks.items():
            if name in self.used:
                continue
            scope = _Scope(name, name, {p: (v, "") for p, v in block.params.items()}, INPUT)
            for k, spec in enumerate(block.layers):
                for key, value in split_spec(spec)[1].items():
                    self._substitute(value, ("blocks", name, "layers", k, split_spec(spec)[0], key), scope, {}, ())


def _well_formed(spec: Any) -> bool:
    if isinstance(spec, str):
        return bool(spec)
    return isinstance(spec, dict) and len(spec) == 1 and isinstance(next(iter(spec.values())), (dict, type(None))) \
        and isinstance(next(iter(spec)), str)


def _lone_unnamed(specs: list[Any], blocks: dict[str, BlockConfig]) -> set[str]:
    """Keras's default names of the layer classes with exactly one unnamed layer among `specs` (the model's
    own layers; every layer inside a block gets a name), less every name the model's own entries give."""
    written = [split_spec(spec) for spec in specs if _well_formed(spec)]
    counts: dict[str, int] = {}
    given = set()
    for class_name, kwargs in written:
        name = kwargs.get("name")
        if isinstance(name, str):
            given.add(name)
        elif class_name not in blocks:
            counts[snake_case(class_name)] = counts.get(snake_case(class_name), 0) + 1
    return {name for name, count in counts.items() if count == 1} - given


def expand_blocks(data: dict[str, Any], source: SourceMap, file: Any,
                  references: dict[Path_, str] | None = None) -> Expansion | None:
    """Replace every block use in `data['model']['layers']` (in place); None when the config has no blocks."""
    raw = data.get("blocks")
    model = data.get("model")
    if not raw or not isinstance(raw, dict) or not isinstance(model, dict) or not isinstance(model.get("layers"), list):
        return None  # validation reports a malformed section
    blocks = _check_blocks(raw, source, file)
    _check_cycles(blocks, source)
    named = model.get("inputs")
    inputs = [str(n) for n in named] if isinstance(named, dict) and named else ["input"]
    expander = _Expander(blocks, source, references or {}, inputs, _lone_unnamed(model["layers"], blocks))
    expander.expand_list(model["layers"], ("model", "layers"), _Scope())
    expander.check_unused()
    model["layers"] = expander.layers
    source.aliases = dict(expander.aliases)
    return Expansion(expander.layers, expander.aliases, expander.origins)
