"""A config's layer list (or graph) becomes a functional `keras.Model`."""

from __future__ import annotations

from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain import data, registry
from dltrain.compiling import build_augmentation, build_callbacks, compile_model
from dltrain.config import LoadedConfig, layer_refs, split_spec
from dltrain.errors import ConfigError, ModelBuildError, first_line
from dltrain.trust import require_trust


def input_shapes(loaded: LoadedConfig, dataset_shape: tuple[int, ...] | None) -> dict[str, tuple]:
    """The model's named input shapes: from `model.inputs`, `model.input_shape`, or the dataset."""
    model = loaded.config.model
    if model.inputs:
        return {name: tuple(shape) for name, shape in model.inputs.items()}
    shape = model.input_shape or dataset_shape
    if shape is None:
        raise loaded.error(ConfigError, ("model",), "the input shape is unknown",
                           hint="add model.input_shape, e.g. input_shape: [28, 28]")
    return {"input": tuple(shape)}


def _shape_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_shape_text(v) for v in value)
    return str(tuple(value.shape))


def _preprocessed(loaded: LoadedConfig, preprocessing: Any, train: Any) -> tuple[Any, Any]:
    """The dataset's raw inputs and its adapted preprocessing, which the config's layers are built on."""
    model = loaded.config.model
    if model.inputs:
        raise loaded.error(ConfigError, ("model", "inputs"), "this dataset's preprocessing gives the model one input",
                           hint="remove model.inputs; the first layer takes the preprocessed features")
    raw, features = preprocessing(train)
    shape = tuple(features.shape[1:])
    if model.input_shape is not None and tuple(model.input_shape) != shape:
        raise loaded.error(ConfigError, ("model", "input_shape"),
                           f"the dataset's preprocessed examples have shape {list(shape)}, not {model.input_shape}",
                           hint="remove model.input_shape, or write ${dataset.input_shape}")
    return raw, features


def build_model(loaded: LoadedConfig, dataset_shape: tuple[int | None, ...] | None = None,
                preprocessing: Any = None, train: Any = None) -> keras.Model:
    """Build the functional model the config describes; errors point at the failing layer's line.

    With `preprocessing` (a dataset's adapted Keras preprocessing, see data.Preprocessing), the model takes
    the dataset's raw examples and the config's layers are built on the preprocessed features.
    """
    require_trust(loaded)  # safe_mode: false admits Lambda bytecode and SavedModel layers
    config = loaded.config
    tensors: dict[str, Any] = {}
    if preprocessing is not None:
        model_inputs, tensors["input"] = _preprocessed(loaded, preprocessing, train)
    else:
        for name, shape in input_shapes(loaded, dataset_shape).items():
            tensors[name] = keras.Input(shape=shape, name=name)
        inputs = list(tensors.values())
        model_inputs = inputs[0] if len(inputs) == 1 else inputs
    previous = next(iter(tensors)) if len(tensors) == 1 else None
    for i, spec in enumerate(config.model.layers):
        class_name, kwargs = split_spec(spec)
        path = ("model", "layers", i)
        refs = layer_refs(kwargs) or [previous]
        kwargs.pop("inputs", None)
        layer = registry.build("layer", {class_name: kwargs} if kwargs or isinstance(spec, dict) else class_name,
                               loaded, path)
        args = [tensors[ref] for ref in refs]
        try:
            output = layer(args[0] if len(args) == 1 else args)
        except Exception as error:  # Keras raises many types for shape problems; all are the user's to fix
            raise loaded.error(ModelBuildError, path + (class_name,),
                               f"{class_name} cannot take input of shape {_shape_text(args)}: {first_line(error)}",
                               hint="check this layer's arguments and the layers before it") from None
        key = kwargs.get("name") or f"#{i}"
        tensors[key] = output
        previous = key
    outputs = [tensors[name] for name in (config.model.outputs or [previous])]
    return keras.Model(
        inputs=model_inputs,
        outputs=outputs[0] if len(outputs) == 1 else outputs,
        name=config.name,
    )


def layer_rows(model: keras.Model) -> list[tuple[str, str, str, int]]:
    """(name, class, output shape, parameter count) for each layer, in order."""
    rows = []
    for layer in model.layers:
        output = layer.output
        shape = ", ".join(str(tuple(o.shape)) for o in output) if isinstance(output, (list, tuple)) \
            else str(tuple(output.shape))
        rows.append((layer.name, type(layer).__name__, shape, layer.count_params()))
    return rows


def check(loaded: LoadedConfig) -> keras.Model:
    """Build (but do not train) the configured model, with its optimizer, loss and metrics resolved."""
    keras.backend.clear_session()  # fresh layer-name counters: messages and summaries do not drift
    with loaded.located():
        shape = data.describe(loaded.config.dataset).input_shape
    model = build_model(loaded, shape)
    compile_model(model, loaded)
    build_callbacks(loaded)  # resolved only to check names and arguments
    build_augmentation(loaded)
    return model
