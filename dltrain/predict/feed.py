"""Arrays <-> a model's own inputs and outputs: each input's name, dtype and shape, arrays in the input's dtype,
and outputs in the model's order; what `predict`, the export checks and the server share."""

from __future__ import annotations

from typing import Any

import numpy as np


def input_specs(model: Any) -> list[tuple[str, str, tuple[int | None, ...]]]:
    """(name, dtype, shape) of each model input, in the model's order."""
    return [(t.name, str(t.dtype), tuple(t.shape)) for t in model.inputs]


def output_names(model: Any) -> list[str]:
    """The model's output names in its order (made unique: two outputs of one layer share its name)."""
    import keras

    names = list(keras.Model(model.inputs, model.outputs).output_names)  # a Sequential has none of its own
    return names if len(set(names)) == len(names) else [f"{name}_{i}" for i, name in enumerate(names)]


def input_arrays(model: Any, x: Any) -> list[np.ndarray]:
    """Features (one array, or arrays named after the inputs) as one array per model input, in its dtype."""
    from dltrain.model import is_task

    if is_task(model):  # raw strings or images: the task's preprocessor makes its token ids or pixels
        array = np.asarray(x)
        return [_texts(array) if array.dtype.kind in "OSU" else array]
    specs = input_specs(model)
    if isinstance(x, dict):
        arrays = [np.asarray(x[name]) for name, _, _ in specs]
    else:
        arrays = [np.asarray(x)]
    return [_texts(array) if dtype == "string" else array.astype(dtype, copy=False)
            for array, (_, dtype, _) in zip(arrays, specs)]


def _texts(array: np.ndarray) -> np.ndarray:
    """Strings as an object array of str: a TensorFlow string tensor gives bytes, which onnxruntime would
    read as "b'clay'" and look up as an unknown word."""
    flat = [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in array.ravel()]
    return np.array(flat, dtype=object).reshape(array.shape)


def model_feed(model: Any, arrays: list[np.ndarray]) -> Any:
    """Arrays as `model.predict` takes them: one tensor, or a dict by input name (strings stay strings)."""
    import tensorflow as tf

    tensors = [tf.constant(array) for array in arrays]
    if len(tensors) == 1:
        return tensors[0]
    return {name: tensor for (name, _, _), tensor in zip(input_specs(model), tensors)}


def output_list(model: Any, outputs: Any) -> list[np.ndarray]:
    """`predict` output (an array, a list, or a dict by output name) as a list in the model's output order."""
    if isinstance(outputs, dict):
        names = list(getattr(model, "output_names", None) or outputs)
        return [np.asarray(outputs[name]) for name in names]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(out) for out in outputs]
    return [np.asarray(outputs)]
