"""Exports of a run's model (keras, savedmodel, weights, tflite, onnx), each checked against the Keras model
in the export's own runtime, with the figures in a JSON report beside it. TensorFlow is imported on use."""

from dltrain.export.loading import load_export
from dltrain.export.predicting import predict_export
from dltrain.export.runtime import KerasRuntime, Runtime
from dltrain.export.save import (CALIBRATION, FORMATS, QUANTIZATIONS, SAMPLES, ExportMismatch, ExportResult,
                                 export_model, figure_rows, report_path, verdict)
from dltrain.export.unsupported import ExportError

__all__ = ["CALIBRATION", "FORMATS", "QUANTIZATIONS", "SAMPLES", "ExportError", "ExportMismatch", "ExportResult",
           "KerasRuntime", "Runtime", "export_model", "figure_rows", "load_export", "predict_export", "report_path", "verdict"]
