"""Layer names and `inputs:` / `outputs:` references checked as a graph, without building anything."""

from __future__ import annotations

from typing import Any

from dltrain.config.fields import split_spec
from dltrain.config.hints import did_you_mean, short
from dltrain.config.loaded import LoadedConfig
from dltrain.config.yamlsource import Path_
from dltrain.errors import ConfigError


def layer_refs(kwargs: dict[str, Any]) -> list[str] | None:
    """The `inputs:` a layer names, as a list, or None when it takes the previous layer."""
    refs = kwargs.get("inputs")
    if refs is None:
        return None
    return [refs] if isinstance(refs, str) else list(refs)


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
                cycle = _cycle(model.layers, later, ref, kwargs.get("name"))
                if cycle:
                    flow = " -> ".join(reversed(cycle))  # the way data would flow
                    raise loaded.error(ConfigError, path + ("inputs",),
                                       f"layer '{ref}' takes itself as input" if len(cycle) == 2
                                       else f"the layers form a cycle: {flow}",
                                       hint="a model is a graph without loops; take an earlier layer as input")
                raise loaded.error(ConfigError, path + ("inputs",),
                                   f"layer '{ref}' is defined later (model.layers[{later[ref]}])",
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
