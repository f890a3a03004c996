"""`dltrain predict --model FILE`: an export of a run's model answers raw inputs in its own runtime, with the
Keras model's answers beside."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dltrain.export.loading import load_export
from dltrain.predict import Predictions, class_probabilities, input_arrays, predictions, read_run_inputs


def predict_export(run_dir: Path, inputs: list[Path], model_path: Path, *, best: bool = False,
                   batch_size: int = 256, trust_code: bool = False) -> Predictions:
    """Run `model_path` (an .onnx or .tflite file, or a SavedModel folder) on the inputs; `reference` holds the
    Keras model's predictions for the same inputs."""
    read = read_run_inputs(run_dir, inputs, best=best, trust_code=trust_code)
    outputs = read.model.predict(read.x, batch_size=batch_size, verbose=0)
    found = predictions(read.names, outputs, read.dataset, read.notes)
    runtime = load_export(model_path, read.model)
    x = read.x
    arrays = input_arrays(read.model, {k: np.asarray(v) for k, v in x.items()} if isinstance(x, dict) else np.asarray(x))
    parts = [runtime([a[i:i + batch_size] for a in arrays]) for i in range(0, len(arrays[0]), batch_size)]
    # Where the Keras model gives probabilities, the export's outputs are the same probabilities, rounded.
    given = not class_probabilities(outputs, read.dataset.get("num_classes"))[1]
    exported = predictions(read.names, [np.concatenate(p) for p in zip(*parts)], read.dataset, read.notes,
                           given=given)
    exported.reference = found
    return exported
