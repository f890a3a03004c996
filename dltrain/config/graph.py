"""Layer names and `inputs:` / `outputs:` references checked as a graph, without building anything."""

from __future__ import annotations

from typing import Any

from dltrain.config.fields import split_spec
from dltrain.config.hints import did_you_mean, short
from dltrain.config.loaded import LoadedConfig
from dltrain.config.yamlsource import Path_
from dltrain.errors import ConfigError


def layer_refs(kwargs: dict[str, Any]) -> list[str] | None:
    """The names a layer's `inputs:` gives (a name, a list, or call()'s arguments by name), or None when it
    takes the previous layer."""
    refs = kwargs.get("inputs")
    if refs is None:
        return None
    if isinstance(refs, dict):
        return [ref for value in refs.values() for ref in ([value] if isinstance(value, str) else list(value or []))]
    return [refs] if isinstance(refs, str) else list(refs)


def split_output(ref: str, names: Any) -> tuple[str, int | None]:
    """`enc.1` -> ('enc', 1) when `enc` is one of `names` (and `enc.1` is not); else (ref, None)."""
    base, dot, index = ref.rpartition(".")
    if dot and index.isdigit() and ref not in names and base in names:
        return base, int(index)
    return ref, None


def _check_shape(kwargs: dict[str, Any], loaded: LoadedConfig, path: Path_) -> None:
    """`inputs:` is a name, a list of names, or a mapping of call() arguments to names; `call:` a mapping."""
    refs = kwargs.get("inputs")
    if isinstance(refs, dict):
        for key, value in refs.items():
            if not (isinstance(value, str) or (isinstance(value, list) and value
                                                and all(isinstance(v, str) for v in value))):
                raise loaded.error(ConfigError, path + ("inputs", key),
                                   f"expected a layer name or a list of names, got {short(value)}")
        if not refs:
            raise loaded.error(ConfigError, path + ("inputs",), "must not be empty")
    elif refs is not None and not (isinstance(refs, str) or (isinstance(refs, list) and refs
                                                              and all(isinstance(r, str) for r in refs))):
        raise loaded.error(ConfigError, path + ("inputs",),
                           "expected a layer name, a list of names, or a mapping of call() arguments to names",
                           hint="inputs: [a, b], or inputs: {sequences: a, initial_state: [enc.1, enc.2]}")
    call = kwargs.get("call")
    if call is not None and not isinstance(call, dict):
        raise loaded.error(ConfigError, path + ("call",), f"expected a mapping of call() arguments, got {short(call)}",
                           hint="for example call: {training: false}")
    both = set(call or ()) & set(refs if isinstance(refs, dict) else ())
    if both:
        raise loaded.error(ConfigError, path + ("call", sorted(both)[0]),
                           f"'{sorted(both)[0]}' is given in both inputs: and call:",
                           hint="tensors go in inputs:, other arguments in call:")


def _cycle(layers: list[Any], index: dict[str, int], start: str, name: Any) -> list[str] | None:
    """The loop `name -> start -> ... -> name` through `inputs:` references, if there is one."""
    if not isinstance(name, str):
        return None
    seen: set[str] = set()

    def walk(node: str, trail: list[str]) -> list[str] | None:
        if node == name:
            return trail
        if node in seen or node not in index:
            return None
        seen.add(node)
        i = index[node]
        refs = layer_refs(split_spec(layers[i])[1])
        if refs is None:  # the default input is the layer just before
            previous = split_spec(layers[i - 1])[1].get("name") if i > 0 else None
            refs = [previous] if isinstance(previous, str) else []
        for ref in refs:
            ref = split_output(ref, index)[0] if isinstance(ref, str) else ref
            if isinstance(ref, str) and (found := walk(ref, trail + [ref])):
                return found
        return None

    return walk(start, [name, start])


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
        _check_shape(kwargs, loaded, path)
        refs = layer_refs(kwargs)
        if refs is None:
            if previous is None:
                raise loaded.error(ConfigError, path, "this layer needs 'inputs:'",
                                   hint=f"the model has several inputs: {', '.join(input_names)}")
            refs = [previous]
        for ref in refs:
            ref = split_output(ref, [*defined, *input_names, *later])[0]
            if ref in defined or ref in input_names:
                used.add(ref)
                continue
            if ref in later:
                cycle = _cycle(model.layers, later, ref, kwargs.get("name"))
                if cycle:
                    flow = " -> ".join(reversed(cycle))  # the way data would flow
                    raise loaded.error(ConfigError, path + ("inputs",),
                                       f"layer '{ref}' takes itself as input" if len(cycle) == 2
                                       else f"the layers form a cycle: {flow}",
                                       hint="a model is a graph without loops; take an earlier layer as input")
                raise loaded.error(ConfigError, path + ("inputs",),
                                   f"layer '{ref}' is defined later ({loaded.source.key(('model', 'layers', later[ref]))})",
                                   hint="a layer can only take earlier layers as inputs")
            hint = did_you_mean(ref, list(defined) + input_names) or "name an earlier layer with 'name:'"
            raise loaded.error(ConfigError, path + ("inputs",), f"no layer or input named '{ref}'", hint=hint)
        name = kwargs.get("name")
        key = name if isinstance(name, str) else f"#{i}"
        if name is not None and not isinstance(name, str):
            raise loaded.error(ConfigError, path + ("name",), f"expected a string, got {short(name)}")
        if key in defined or key in input_names:
            raise loaded.error(ConfigError, path + ("name",), f"the name '{key}' is used twice",
                               hint="layer names must be unique")
        defined[key] = i
        previous = key
    outputs = model.outputs or [previous]
    for j, out in enumerate(outputs):
        if out not in defined:
            base, index = split_output(out, defined)
            hint = f"a model output is a layer: give output {index} of '{base}' a layer of its own, e.g. " \
                   f"{{Identity: {{name: {base}_{index}, inputs: {out}}}}}" if index is not None else \
                did_you_mean(out, [n for n in defined if not n.startswith("#")])
            raise loaded.error(ConfigError, ("model", "outputs", j), f"no layer named '{out}'", hint=hint)
    unused = [n for n in list(defined) + input_names if n not in used and n not in outputs]
    if unused:
        first = unused[0]
        if first in input_names:
            raise loaded.error(ConfigError, ("model", "inputs", first) if model.inputs else ("model",),
                               f"model input '{first}' feeds no layer", hint="use it in a layer's 'inputs:'")
        i = defined[first]
        label = f"'{first}'" if not first.startswith("#") else loaded.source.key(("model", "layers", i))
        class_name, _ = split_spec(model.layers[i])
        raise loaded.error(ConfigError, ("model", "layers", i, class_name),
                           f"layer {label} is never used: it feeds no layer and is not in model.outputs",
                           hint="list it in model.outputs or remove it")
