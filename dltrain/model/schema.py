"""A JSON Schema of dltrain configs, for editors: key completion, Keras class and argument names."""

from __future__ import annotations

import inspect
from typing import Any

from dltrain.config import DATASET_NAMES, Config

SCHEMA_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_REFERENCE = {"type": "string", "pattern": r"\$\{[^{}]+\}", "description": "a ${key.path} reference"}
# Where a config names Keras objects, and which kind of object each place takes.
_SPEC_PLACES = (
    (("$defs", "ModelConfig", "properties", "layers", "items"), "layer"),
    (("$defs", "BlockConfig", "properties", "layers", "items"), "layer"),
    (("$defs", "DatasetConfig", "properties", "augmentation", "items"), "layer"),
    (("properties", "optimizer"), "optimizer"),
    (("properties", "loss"), "loss"),
    (("properties", "metrics"), "metric"),
    (("$defs", "TrainingConfig", "properties", "callbacks", "items"), "callback"),
)


def _allow_references(node: Any) -> Any:
    """Every number, boolean or shape may also be written as a `${...}` reference."""
    if isinstance(node, list):
        return [_allow_references(v) for v in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") in ("integer", "number", "boolean") or (
            node.get("type") == "array" and _scalar(node.get("items", {}))):
        return {"anyOf": [node, _REFERENCE]}
    return {k: _allow_references(v) for k, v in node.items()}


def _scalar(node: dict[str, Any]) -> bool:
    """Integers, numbers, or a choice between them and null (an input shape's items)."""
    kinds = [n.get("type") for n in node.get("anyOf", [node])]
    return bool(kinds) and all(k in ("integer", "number", "null") for k in kinds)


def _first_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


_REF_NAME = {"type": "string", "description": "a layer or model input; `name.N` is output N of a layer that "
                                             "returns several"}


def _call_keys(call: Any) -> dict[str, Any]:
    """`inputs` and `call`: how the layer is called, from its `call` signature."""
    params = [p for p in inspect.signature(call).parameters.values()
              if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    names = {p.name: {} for p in params}
    tensors = {"anyOf": [_REF_NAME, {"type": "array", "items": _REF_NAME}]}
    return {
        "inputs": {"description": "what the layer is called on (default: the layer before): a name, a list (one "
                                  "argument or positional tensors, as call() takes them), or call()'s arguments "
                                  "by name", "anyOf": [*tensors["anyOf"], {"type": "object", "properties": {
                                      name: tensors for name in names}}]},
        "call": {"type": "object", "description": "call()'s other arguments (training, use_causal_mask, ...)",
                 "properties": names},
    }


def _layer_places() -> dict[str, Any]:
    """keras.applications models: layers by their name, with their function's arguments."""
    from keras.src.models.functional import Functional  # what keras.applications functions return

    import dltrain.model.backbones as backbones
    import dltrain.model.registry as registry

    found = {}
    for name, function in registry.catalog("application").items():
        names, required = backbones.arguments(function)
        arguments = {arg: {} for arg in [*names, *backbones.EXTRA] if arg != "input_tensor"}
        found[name] = {"type": ["object", "null"], "description": _first_line(function),
                       "properties": {**arguments, "name": {"type": "string"}, **_call_keys(Functional.call)},
                       "required": required}
    return found


def _spec_schema(kind: str) -> dict[str, Any]:
    """A bare Keras name, or a one-key mapping from a Keras class to its keyword arguments."""
    import dltrain.model.registry as registry

    names = registry.list_names(kind)
    classes = {}
    for name in names:
        obj = registry.catalog(kind)[name]
        if not inspect.isclass(obj) or name != obj.__name__:
            continue
        accepted, required = registry.accepted_arguments(obj)
        arguments = {arg: {} for arg in sorted(accepted)}
        if kind == "layer":
            arguments.update(_call_keys(obj.call))
        classes[name] = {"type": ["object", "null"], "description": _first_line(obj), "properties": arguments,
                         "required": required}
    if kind == "layer":
        classes.update(_layer_places())
        names = sorted([*names, *registry.catalog("application")])
    # Names outside the enum stay valid: custom_objects add names Keras does not have.
    return {"anyOf": [
        {"type": "string", "enum": names},
        {"type": "string"},
        {"type": "object", "minProperties": 1, "maxProperties": 1, "properties": classes},
    ]}


def _set(schema: dict[str, Any], place: tuple[str, ...], value: dict[str, Any]) -> None:
    node = schema
    for part in place[:-1]:
        node = node[part]
    old = node.get(place[-1], {})
    node[place[-1]] = {**{k: v for k, v in old.items() if k in ("default", "description")}, **value}


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, with Keras's classes and their arguments."""
    schema = Config.model_json_schema()
    schema["properties"]["extends"] = {"type": "string", "description": "a base config this file extends"}
    # Any string: with `format: tfds` the name is a TensorFlow Datasets name; ours are offered first.
    schema["$defs"]["DatasetConfig"]["properties"]["name"]["examples"] = list(DATASET_NAMES)
    # One definition of a layer entry, referred to from model.layers, blocks and augmentation.
    schema["$defs"]["Layer"] = _spec_schema("layer")
    for place, kind in _SPEC_PLACES:
        spec = {"$ref": "#/$defs/Layer"} if kind == "layer" else _spec_schema(kind)
        if kind in ("loss", "metric"):
            one = spec if kind == "loss" else {"type": "array", "items": spec}
            _set(schema, place, {"anyOf": [one, {"type": "object", "additionalProperties": one}]})
        else:
            _set(schema, place, spec)
    schema = _allow_references(schema)
    return {"$schema": SCHEMA_DRAFT, "title": "dltrain config", **schema}
