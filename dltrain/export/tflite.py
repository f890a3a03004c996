"""TFLite (LiteRT) files: float32, dynamic-range or full-integer int8, converted from the model's SavedModel
with TFLite's built-in ops only, and run in the LiteRT interpreter."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dltrain import runs
from dltrain.errors import first_line
from dltrain.export.quiet import quiet
from dltrain.export.runtime import Runtime, match_inputs, ordered_outputs, version
from dltrain.export.samples import Samples
from dltrain.export.unsupported import ExportError, by_layer, unsupported

# Neither interpreter dltrain runs (ai-edge-litert, tf.lite.Interpreter) has the Select-TF (Flex) kernels, so
# a file that needs them would convert and then fail on load: convert with built-in ops only, and say so.
FLEX_WHY = ("these TensorFlow ops have no TFLite built-in kernel; they are Select-TF (Flex) ops, which neither "
            "ai-edge-litert nor tf.lite.Interpreter runs")
FLEX_HINT = "export this model with --format savedmodel, or with --format onnx where its ops convert"
# The converter's own messages: `loc(callsite(fused["StringLower:", "model/text_vectorization/StringLower@..."`.
_LOCATED_OP = re.compile(r'fused\["(\w+):", "([^"@]+)@')


def interpreter_class() -> tuple[type, str]:
    """LiteRT's interpreter where ai-edge-litert is installed, else TensorFlow's own (deprecated) one."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tensorflow {version('tensorflow')} (tf.lite.Interpreter)"


def _strings(array: np.ndarray) -> np.ndarray:
    return array.astype(np.str_) if array.dtype == object else array


def _representative(calibration: Samples, names: list[str]) -> Iterator[Any]:
    """One training example at a time, as the converter's calibration reads them."""
    for i in range(len(calibration)):
        rows = [_strings(array) for array in calibration.rows(i, i + 1)]
        yield rows if len(rows) == 1 else dict(zip(names, rows))


def _converter_error(model: Any, error: Exception) -> ExportError:
    """The converter's failure as an error naming the layers (and ops) it could not convert."""
    located = []
    for data in getattr(error, "errors", None) or []:
        calls = [call.name for call in data.location.call]
        if data.operator.name and calls:
            located.append((data.operator.name.removeprefix("tf."), calls[0]))
    if not located:
        located = list(_LOCATED_OP.findall(str(error)))
    tensorflow_ops = [(op, scope) for op, scope in located if not op.startswith("tfl.")]
    if tensorflow_ops:
        return unsupported("tflite", by_layer(model, tensorflow_ops), FLEX_WHY, FLEX_HINT)
    if located:
        return unsupported("tflite", by_layer(model, located), f"the TFLite converter failed: {first_line(error)}",
                           "export without --quantize, or as --format savedmodel")
    return ExportError(f"the TFLite converter failed: {first_line(error)}")


def convert(model: Any, quantize: str | None, calibration: Samples | None) -> bytes:
    """The model as a .tflite flatbuffer: float32, dynamic-range int8 weights, or int8 throughout."""
    from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="dltrain-tflite-") as tmp:
        saved = Path(tmp) / "savedmodel"
        model.export(str(saved), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "int8":
            if calibration is None:
                raise ExportError("int8 quantization needs calibration examples")
            names = [t.name for t in model.inputs]
            converter.representative_dataset = lambda: _representative(calibration, names)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        try:
            with quiet():
                return converter.convert()
        except Exception as error:  # ConverterError, and the ValueErrors of calibration
            failure = error
        # The converter stops at its first failing pass. When that is lowering tensor lists (LSTM, GRU), ops
        # that later passes would refuse (strings) go unnamed: convert again without it to name them all.
        if "tensor list" in str(failure):
            converter._experimental_lower_tensor_list_ops = False
            try:
                with quiet():
                    converter.convert()
            except Exception as error:
                failure = error
        raise _converter_error(model, failure)


def _quantized(detail: dict[str, Any]) -> tuple[float, int] | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero_point)) if scale and np.issubdtype(detail["dtype"], np.integer) else None


def quantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float input as the file takes it: int8/uint8 through its scale and zero point, strings as str."""
    found = _quantized(detail)
    if found is None or array.dtype.kind not in "fc":
        return _strings(array) if array.dtype.kind in "OUS" else array.astype(detail["dtype"], copy=False)
    scale, zero_point = found
    limits = np.iinfo(detail["dtype"])
    return np.clip(np.round(array / scale + zero_point), limits.min, limits.max).astype(detail["dtype"])


def dequantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """An int8/uint8 output as the floats it stands for."""
    found = _quantized(detail)
    if found is None:
        return array
    scale, zero_point = found
    return (array.astype(np.float32) - zero_point) * scale


class TFLiteRuntime(Runtime):
    """A .tflite file in the LiteRT interpreter, called through its serving signature."""

    def __init__(self, path: Path, model_inputs: list[str]) -> None:
        interpreter, name = interpreter_class()
        try:  # quiet: tf.lite.Interpreter warns that it moves to ai-edge-litert (the report names the runtime)
            with quiet():
                self.interpreter = interpreter(model_path=str(path))
                self.interpreter.allocate_tensors()  # XNNPACK says hello here, not in the first call
                self.runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as error:
            raise ExportError(f"cannot load {path} in {name}: {first_line(error)}") from None
        self.inputs = self.runner.get_input_details()
        self.outputs = self.runner.get_output_details()
        self.names = match_inputs(model_inputs, list(self.inputs), f"{path}")
        ops_details = getattr(self.interpreter, "_get_ops_details", None)
        ops = sorted({op["op_name"] for op in ops_details()}) if ops_details else []
        self.facts = {"runtime": name, "ops": ops,
                      "input_types": {n: np.dtype(d["dtype"]).name for n, d in self.inputs.items()}}

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = {name: quantize(array, self.inputs[name]) for name, array in zip(self.names, arrays)}
        outputs = self.runner(**feeds)
        return ordered_outputs({name: dequantize(value, self.outputs[name]) for name, value in outputs.items()})


def write(model: Any, out: Path, quantize: str | None, calibration: Samples | None) -> Runtime:
    """Convert, write `out` atomically, and load it back in the interpreter."""
    content = convert(model, quantize, calibration)
    runs.atomic_write_bytes(out, content)
    runtime = TFLiteRuntime(out, [t.name for t in model.inputs])
    runtime.facts["op_set"] = "TFLITE_BUILTINS_INT8" if quantize == "int8" else "TFLITE_BUILTINS"
    return runtime
