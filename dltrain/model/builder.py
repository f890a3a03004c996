"""A config's layer list (or graph) becomes a functional `keras.Model`."""

from __future__ import annotations

from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import numpy as np

from dltrain import data
from dltrain.config import LoadedConfig, split_spec
from dltrain.errors import ConfigError
import dltrain.model.backbones as backbones
import dltrain.model.hub as hub
import dltrain.model.registry as registry
from dltrain.model.calls import Graph, call_layer
from dltrain.model.compiling import build_augmentation, build_callbacks, compile_model
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
                preprocessing: Any = None, train: Any = None, num_classes: int | None = None) -> keras.Model:
    """Build the functional model the config describes; errors point at the failing layer's line.

    With `preprocessing` (a dataset's adapted Keras preprocessing, see data.Preprocessing), the model takes
    the dataset's raw examples and the config's layers are built on the preprocessed features. A KerasHub
    task (`model.task`) comes from its preset and takes the raw examples itself (its preprocessor tokenizes).
    """
    require_trust(loaded)  # safe_mode: false admits Lambda bytecode and SavedModel layers
    config = loaded.config
    if config.model.task is not None:
        return hub.build_task(loaded, num_classes,
                              registry.custom_objects(loaded) if config.custom_objects else {})
    graph = Graph(loaded)
    if preprocessing is not None:
        model_inputs, features = _preprocessed(loaded, preprocessing, train)
        graph.add("input", features, "preprocessing")
    else:
        for name, shape in input_shapes(loaded, dataset_shape).items():
            graph.add(name, keras.Input(shape=shape, name=name), "Input")
        inputs = list(graph.tensors.values())
        model_inputs = inputs[0] if len(inputs) == 1 else inputs
    previous = next(iter(graph.tensors)) if len(graph.tensors) == 1 else None
    for i, spec in enumerate(config.model.layers):
        class_name, kwargs = split_spec(spec)
        path = ("model", "layers", i)
        inputs = kwargs.pop("inputs", None) or previous
        call_args = kwargs.pop("call", None) or {}
        who = f"layer '{kwargs['name']}'" if isinstance(kwargs.get("name"), str) else loaded.source.key(path)
        layer = _layer(class_name, kwargs, spec, graph, inputs, loaded, path, who)
        output = call_layer(layer, inputs, call_args, graph, path + (class_name,), class_name, who)
        key = kwargs.get("name") or f"#{i}"
        graph.add(key, output, class_name)
        previous = key
    outputs = [graph.tensors[name] for name in (config.model.outputs or [previous])]
    return keras.Model(
        inputs=model_inputs,
        outputs=outputs[0] if len(outputs) == 1 else outputs,
        name=config.name,
    )


def _layer(class_name: str, kwargs: dict[str, Any], spec: Any, graph: Graph, inputs: Any, loaded: LoadedConfig,
           path: tuple, who: str) -> Any:
    """The Keras layer of one config entry: a keras.layers class, a custom object or a keras.applications model."""
    custom = registry.custom_objects(loaded) if loaded.config.custom_objects else {}
    if class_name in registry.catalog("application") and class_name not in custom:
        first = _first_tensor(graph.resolve(inputs, path + (class_name, "inputs"), who))
        return backbones.build(class_name, kwargs, tuple(first.shape[1:]), loaded, path)
    if hub.is_backbone_name(class_name) and "preset" in kwargs and class_name not in custom:
        return hub.backbone_layer(class_name, kwargs, loaded, path, custom)
    return registry.build("layer", {class_name: kwargs} if kwargs or isinstance(spec, dict) else class_name,
                          loaded, path)


def _first_tensor(value: Any) -> Any:
    if isinstance(value, dict):
        value = list(value.values())
    while isinstance(value, (list, tuple)):
        value = value[0]
    return value


def layer_rows(model: keras.Model) -> list[tuple[str, str, str, int, int]]:
    """(name, class, output shape, parameters, trainable parameters) for each layer, in order."""
    rows = []
    for layer in model.layers:
        output = layer.output
        if isinstance(output, dict):  # a KerasHub backbone's named outputs
            output = list(output.values())
        shape = ", ".join(str(tuple(o.shape)) for o in output) if isinstance(output, (list, tuple)) \
            else str(tuple(output.shape))
        rows.append((layer.name, type(layer).__name__, shape, layer.count_params(), trainable_count(layer)))
    return rows


def trainable_count(layer: keras.layers.Layer) -> int:
    """The parameters training updates (a frozen layer's, and BatchNormalization's statistics, are not)."""
    return int(sum(np.prod(w.shape) for w in layer.trainable_weights))


def check(loaded: LoadedConfig) -> keras.Model:
    """Build (but do not train) the configured model, with its optimizer, loss and metrics resolved."""
    keras.backend.clear_session()  # fresh layer-name counters: messages and summaries do not drift
    with loaded.located():
        info = data.describe(loaded.config.dataset)
    model = build_model(loaded, info.input_shape, num_classes=info.num_classes)
    compile_model(model, loaded)
    build_callbacks(loaded)  # resolved only to check names and arguments
    build_augmentation(loaded)
    return model
