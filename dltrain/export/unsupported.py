"""What cannot be exported is said: converter op names and scopes are traced back to the model's layers."""

from __future__ import annotations

import re
from typing import Any, Iterable

from dltrain.errors import DltrainError


class ExportError(DltrainError):
    """A model cannot be written in the asked format, or the format's tools are missing."""


def layer_for_scope(model: Any, scope: str) -> Any | None:
    """The top-level layer of `model` whose name scope holds an op named `scope` (`lstm_1/lstm_1/TensorArrayV2`).

    TensorFlow makes scope names unique per graph (`lstm` is traced as `lstm_1`), so `_N` suffixes are stripped
    until a layer name matches; the first part is the model's own scope and is skipped.
    """
    layers = {layer.name: layer for layer in model.layers if type(layer).__name__ != "InputLayer"}
    for part in scope.split("@")[0].split("/")[1:]:
        name = part
        while True:
            if name in layers:
                return layers[name]
            shorter = re.fullmatch(r"(.+)_\d+", name)
            if shorter is None:
                break
            name = shorter.group(1)
    return None


def by_layer(model: Any, ops: Iterable[tuple[str, str]]) -> list[tuple[Any | None, list[str]]]:
    """`(op type, op scope)` pairs grouped by the layer that holds them (None: no layer found), in layer order;
    each layer's op types sorted by name."""
    found: dict[str, tuple[Any | None, list[str]]] = {}
    for op, scope in ops:
        layer = layer_for_scope(model, scope)
        _, names = found.setdefault(layer.name if layer is not None else "", (layer, []))
        if op not in names:
            names.append(op)
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    return [(layer, sorted(ops)) for layer, ops in
            (found[name] for name in sorted(found, key=lambda name: order.get(name, len(order))))]


def unsupported(fmt: str, grouped: list[tuple[Any | None, list[str]]], why: str, hint: str) -> ExportError:
    """The error for layers whose ops `fmt`'s runtime cannot execute, each named with its ops."""
    parts = [f"'{layer.name}' ({type(layer).__name__}: {', '.join(ops)})" if layer is not None
             else f"of the model ({', '.join(ops)})" for layer, ops in grouped]
    noun = "layer" if len(parts) == 1 else "layers"
    return ExportError(f"{fmt} cannot run {noun} {' and '.join(parts)}: {why}", hint=hint)
