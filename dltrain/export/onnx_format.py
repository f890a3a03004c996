"""ONNX files through tf2onnx's `from_keras` at a fixed opset, loaded in onnxruntime (CPU) before they are
written: tf2onnx leaves ops it cannot convert in the graph, so only loading the file shows them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dltrain import runs
from dltrain.errors import first_line
from dltrain.export.quiet import quiet
from dltrain.export.runtime import Runtime, match_inputs, version
from dltrain.export.unsupported import ExportError, by_layer, unsupported
from dltrain.predict import input_specs, output_names

# Opset 17 (ONNX 1.12) runs in onnxruntime 1.13 and newer; tf2onnx 1.17 converts up to opset 18.
OPSET = 17
PIP = "pip install 'dltrain[onnx]'"
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
# Domains onnxruntime runs besides the ones in ONNX's own schemas (its contrib ops).
_RUNTIME_DOMAINS = ("com.microsoft",)
_NUMPY = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
          "tensor(bool)": np.bool_, "tensor(string)": object}
NOT_CONVERTED = "tf2onnx has no ONNX form of these TensorFlow ops, so onnxruntime cannot load the file"
HINT = "export this model with --format savedmodel"


def require(packages: tuple[str, ...], what: str) -> None:
    """Import `packages`, or say which pip command installs them."""
    missing = []
    for name in packages:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ExportError(f"{what} needs {', '.join(packages)}; {', '.join(missing)} {verb} not installed", hint=PIP)


def _nodes(graph: Any) -> Iterator[Any]:
    """Every node of a graph, with those of its subgraphs (Loop and If bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _nodes(sub)


def _unconverted(proto: Any) -> list[tuple[str, str]]:
    """(op type, node name) of the nodes no ONNX schema (nor onnxruntime's contrib ops) knows."""
    import onnx

    return [(node.op_type, node.name) for node in _nodes(proto.graph)
            if node.domain not in _RUNTIME_DOMAINS and not onnx.defs.has(node.op_type, node.domain)]


def session(content: bytes, what: str, model: Any | None = None) -> Any:
    """An onnxruntime CPU session on the file's bytes; a node it cannot load is named with its layer."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own Fail / InvalidGraph / NotImplemented
        node = re.search(r'Node[^(]*\("([^"]*)", (\w+)', str(error))
        if node is not None and model is not None:
            grouped = by_layer(model, [(node.group(2), node.group(1))])
            raise unsupported("onnx", grouped, f"onnxruntime cannot load it: {first_line(error)}", HINT) from None
        raise ExportError(f"onnxruntime cannot load {what}: {first_line(error)}") from None


def convert(model: Any) -> Any:
    """The model as an ONNX ModelProto (one graph input per model input, by name; batch size free)."""
    from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
    import keras
    import tensorflow as tf
    import tf2onnx

    specs = [tf.TensorSpec(shape, dtype, name=name) for name, dtype, shape in input_specs(model)]
    signature = specs if len(specs) == 1 else [{spec.name: spec for spec in specs}]
    # from_keras looks each of `model.output_names` up among the traced function's dict outputs: a Keras 3
    # Sequential has no output_names and a functional model returns bare tensors, so give it that dict.
    names = output_names(model)
    wrapped = keras.Model(model.inputs, dict(zip(names, model.outputs)), name=model.name)
    with quiet():
        try:
            proto, _ = tf2onnx.convert.from_keras(wrapped, input_signature=signature, opset=OPSET)
        except Exception as error:  # tf2onnx raises whatever its handlers raise
            raise ExportError(f"tf2onnx could not convert the model: {first_line(error)}", hint=HINT) from None
    left = _unconverted(proto)
    if left:
        raise unsupported("onnx", by_layer(model, left), NOT_CONVERTED, HINT)
    return proto


class OnnxRuntime(Runtime):
    """An .onnx file in onnxruntime on CPU."""

    def __init__(self, path: Path, model: Any) -> None:
        require(("onnxruntime",), "running an .onnx file")
        self.session = session(path.read_bytes(), str(path), model)
        inputs = self.session.get_inputs()
        self.names = match_inputs([t.name for t in model.inputs], [i.name for i in inputs], str(path))
        self.types = {i.name: _NUMPY.get(i.type) for i in inputs}
        # tf2onnx orders graph outputs by name (a flattened dict); run them in the model's order
        wanted, given = output_names(model), [o.name for o in self.session.get_outputs()]
        self.outputs = wanted if sorted(wanted) == sorted(given) else None
        self.facts = {"runtime": f"onnxruntime {version('onnxruntime')} (CPUExecutionProvider)"}

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = {name: array if self.types[name] is None else array.astype(self.types[name], copy=False)
                 for name, array in zip(self.names, arrays)}
        return [np.asarray(out) for out in self.session.run(self.outputs, feeds)]


def write(model: Any, out: Path) -> Runtime:
    """Convert, load the result in onnxruntime, write `out` atomically, and load the file back."""
    require(ONNX_PACKAGES, "--format onnx")
    proto = convert(model)
    content = proto.SerializeToString()
    session(content, "the converted model", model)  # a file onnxruntime cannot load is never written
    runs.atomic_write_bytes(out, content)
    runtime = OnnxRuntime(out, model)
    ops = sorted({f"{node.domain}:{node.op_type}" if node.domain else node.op_type for node in _nodes(proto.graph)})
    runtime.facts.update({"opset": OPSET, "op_set": f"ai.onnx opset {OPSET}", "ops": ops,
                          "converter": f"tf2onnx {version('tf2onnx')}"})
    return runtime
