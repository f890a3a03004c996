"""A Keras model's graph as plain data, so a model built from YAML can be compared with one written with the
functional API: layer types, parameter counts, output shapes and every edge (which output of which layer
goes to which argument of which call)."""

from __future__ import annotations

from typing import Any

import keras


def _source(tensor: Any, index: dict[int, int]) -> tuple[int, int]:
    history = tensor._keras_history
    return index[id(history.operation)], history.tensor_index


def _argument(value: Any, index: dict[int, int]) -> Any:
    if isinstance(value, (list, tuple)):
        return [_argument(v, index) for v in value]
    if isinstance(value, dict):
        return {k: _argument(v, index) for k, v in value.items()}
    if isinstance(value, keras.KerasTensor):
        return _source(value, index)
    return value  # a plain argument: training=False, use_causal_mask=True, ...


def _shapes(output: Any) -> Any:
    if isinstance(output, (list, tuple)):
        return [_shapes(o) for o in output]
    return tuple(output.shape)


def structure(model: keras.Model) -> list[tuple]:
    """For each layer in order: class, parameters, trainable parameters, output shapes, and for each call
    inside this model its positional and keyword arguments, tensors given as (layer position, output index)."""
    index = {id(layer): i for i, layer in enumerate(model.layers)}
    rows = []
    for layer in model.layers:
        calls = []
        for node in layer._inbound_nodes:
            if not all(id(t._keras_history.operation) in index for t in node.arguments.keras_tensors):
                continue  # a call outside this model (a backbone's own graph)
            calls.append((_argument(list(node.arguments.args), index),
                          _argument(dict(node.arguments.kwargs), index)))
        trainable = sum(int(w.numpy().size) for w in layer.trainable_weights)
        rows.append((type(layer).__name__, layer.count_params(), trainable, _shapes(layer.output), calls))
    return rows


def assert_same_graph(ours: keras.Model, theirs: keras.Model) -> None:
    """The two models have the same layers, in the same order, wired the same way."""
    a, b = structure(ours), structure(theirs)
    assert len(a) == len(b), (len(a), len(b))
    for i, (row_a, row_b) in enumerate(zip(a, b)):
        assert row_a == row_b, f"layer {i}: {ours.layers[i].name} {row_a} != {theirs.layers[i].name} {row_b}"
    assert ours.count_params() == theirs.count_params()
    assert [tuple(t.shape) for t in ours.outputs] == [tuple(t.shape) for t in theirs.outputs]
