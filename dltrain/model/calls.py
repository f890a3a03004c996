"""How a config's layer is called on earlier tensors, decided from the layer's real `call` signature.

`inputs:` is one name, a list, or a mapping. A list goes to `call` as one argument when `call` takes one
`inputs` (Add, Concatenate, Attention), else as positional tensors (MultiHeadAttention's query, value,
key). A mapping gives `call`'s arguments by name (`initial_state: [enc.1, enc.2]`), and `call:` its other
arguments (`training: false`, `use_causal_mask: true`). `name.N` is output N of a layer that returns several.
"""

from __future__ import annotations

import inspect
from typing import Any

from dltrain.config import LoadedConfig, Path_, did_you_mean, split_output
from dltrain.errors import ConfigError, ModelBuildError, first_line

_TENSOR_KINDS = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _shape_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_shape_text(v) for v in value)
    return str(tuple(value.shape))


class Graph:
    """The tensors built so far, by layer name (`#i` for an unnamed layer), and the class of each."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self.tensors: dict[str, Any] = {}
        self.kinds: dict[str, str] = {}

    def add(self, key: str, output: Any, kind: str) -> None:
        """Record a layer's output (one tensor, or several)."""
        self.tensors[key] = output
        self.kinds[key] = kind

    def tensor(self, ref: str, path: Path_, who: str) -> Any:
        """The tensor `ref` names: a layer's output, or `name.N`, output N of a layer that returns several."""
        if ref in self.tensors:
            return self.tensors[ref]
        base, index = split_output(ref, self.tensors)
        output, kind = self.tensors[base], self.kinds[base]  # the graph check made sure `base` exists
        if not isinstance(output, (list, tuple)):
            raise self.loaded.error(ModelBuildError, path,
                                    f"{who} takes '{ref}', but layer '{base}' ({kind}) has one output",
                                    hint=f"write '{base}'")
        if index >= len(output):
            raise self.loaded.error(ModelBuildError, path,
                                    f"{who} takes '{ref}', but layer '{base}' ({kind}) has {len(output)} outputs: "
                                    f"{base}.0 to {base}.{len(output) - 1}", hint=None)
        return output[index]

    def resolve(self, inputs: Any, path: Path_, who: str) -> Any:
        """The tensors `inputs:` names, in its shape: one, a list, or a mapping of lists or ones."""
        if isinstance(inputs, dict):
            return {key: self.resolve(value, path + (key,), who) for key, value in inputs.items()}
        if isinstance(inputs, list):
            return [self.tensor(ref, path + (i,), who) for i, ref in enumerate(inputs)]
        return self.tensor(inputs, path, who)


def _flat(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _flat(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat(v)]
    return [value]


def _check_names(names: list[str], given: dict[str, Any], open_ended: bool, loaded: LoadedConfig, path: Path_,
                 class_name: str) -> None:
    for key in given:
        if key not in names and not open_ended:
            hint = did_you_mean(key, names) or f"it takes: {', '.join(names)}"
            raise loaded.error(ConfigError, path + (key,), f"{class_name}'s call() has no argument '{key}'", hint=hint)


def call_layer(layer: Any, inputs: Any, call_args: dict[str, Any], graph: Graph, path: Path_, class_name: str,
               who: str) -> Any:
    """Call `layer` on the tensors `inputs` names, the way its `call` signature takes them."""
    loaded = graph.loaded
    params = list(inspect.signature(layer.call).parameters.values())
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    positional = [p for p in params if p.kind in _TENSOR_KINDS]
    required = [p.name for p in positional if p.default is p.empty]
    open_ended = any(p.kind is p.VAR_KEYWORD for p in params)
    _check_names(names, call_args, open_ended, loaded, path + ("call",), class_name)
    tensors = graph.resolve(inputs, path + ("inputs",), who)
    if isinstance(inputs, dict):
        _check_names(names, inputs, open_ended, loaded, path + ("inputs",), class_name)
        missing = [name for name in required if name not in inputs and name not in call_args]
        if missing:
            raise loaded.error(ConfigError, path + ("inputs",), f"{class_name}'s call() needs '{missing[0]}'",
                               hint=f"add {missing[0]}: <layer name> to inputs:")
        # Required tensors go by position, the rest by name, as the functional API writes them:
        # lstm(x, initial_state=[h, c]), attention(query, value, key=k).
        leading = required
        count = next((i for i, name in enumerate(leading) if name not in tensors), len(leading))
        args = tuple(tensors[name] for name in leading[:count])
        kwargs = {k: v for k, v in tensors.items() if k not in leading[:count]}
    else:
        items = tensors if isinstance(inputs, list) else [tensors]
        several = len(required) > 1 or any(p.kind is p.VAR_POSITIONAL for p in params)
        if len(items) == 1:
            args = (items[0],)
        elif not several:  # call(inputs): merging layers and Attention take the list as one argument
            args = (items,)
        elif len(items) > len(positional) and not any(p.kind is p.VAR_POSITIONAL for p in params):
            raise loaded.error(ConfigError, path + ("inputs",),
                               f"{class_name}'s call() takes at most {len(positional)} tensors "
                               f"({', '.join(p.name for p in positional)}), got {len(items)}", hint=None)
        else:
            args = tuple(items)
        if len(args) < len(required):
            example = ", ".join(f"<{name}>" for name in required)
            raise loaded.error(ConfigError, path + ("inputs",),
                               f"{class_name}'s call() takes {len(required)} tensors ({', '.join(required)}), "
                               f"got {len(args)}", hint=f"write inputs: [{example}]")
        kwargs = {}
    try:
        return layer(*args, **kwargs, **call_args)
    except Exception as error:  # Keras raises many types for shape problems; all are the user's to fix
        raise loaded.error(ModelBuildError, path,
                           f"{class_name} cannot take input of shape {_shape_text(_flat(tensors))}: "
                           f"{first_line(error)}",
                           hint="check this layer's arguments and the layers before it") from None
