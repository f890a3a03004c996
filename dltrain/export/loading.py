"""An export file opened in its own runtime, by its kind: `.onnx`, `.tflite`, or a SavedModel folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dltrain.export.runtime import Runtime
from dltrain.export.unsupported import ExportError

KINDS = ".onnx file, a .tflite file or a SavedModel folder"


def load_export(path: Path, model: Any) -> Runtime:
    """`path` loaded in onnxruntime, the TFLite interpreter or TensorFlow, fed as `model`'s inputs are."""
    names = [t.name for t in model.inputs]
    if path.is_dir() and (path / "saved_model.pb").is_file():
        from dltrain.export.keras_formats import SavedModelRuntime

        return SavedModelRuntime(path, names)
    if not path.exists():
        raise ExportError(f"'{path}' not found", hint=f"give an {KINDS} made by `dltrain save`")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from dltrain.export.onnx_format import OnnxRuntime

        return OnnxRuntime(path, model)
    if suffix == ".tflite":
        from dltrain.export.tflite import TFLiteRuntime

        return TFLiteRuntime(path, names)
    raise ExportError(f"cannot run '{path}' as an export", hint=f"give an {KINDS}")
