"""Use a trained run on new inputs: its model, read with Keras's safe_mode, on raw input files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain import runs
from dltrain.predict.answers import Predictions, predictions
from dltrain.predict.inputs import read_inputs, read_named, read_texts


@dataclass
class RunInputs:
    """A run's model (read with Keras's safe_mode) and raw input files read the way it takes them."""

    model: Any
    x: Any
    names: list[str]
    notes: list[str]
    dataset: dict[str, Any]


def read_run_inputs(run_dir: Path, inputs: list[Path], *, best: bool = False, trust_code: bool = False) -> RunInputs:
    """Load the run's model (model.keras, or best.keras with `best`) and read `inputs` as it takes them.

    `trust_code`: the user's word that the run's custom objects may be imported (dltrain.trust)."""
    from dltrain.load import load_config
    from dltrain.model import is_task, load_model, takes_text

    loaded = load_config(runs.run_file(run_dir, runs.CONFIG_FILE), trust_code=trust_code)
    model_file = runs.run_file(run_dir, runs.BEST_FILE if best else runs.MODEL_FILE)
    dataset = json.loads(runs.run_file(run_dir, runs.DATASET_FILE).read_text())
    model = load_model(model_file, loaded)
    if is_task(model) and takes_text(model):  # a KerasHub text task tokenizes raw text
        x, names, notes = read_texts(inputs), [path.name for path in inputs], []
    elif dataset.get("features"):  # named raw inputs (table columns): read the rows by header
        named, names = read_named(inputs, {t.name: t.dtype for t in model.inputs})
        import tensorflow as tf

        x, notes = {name: tf.constant(array) for name, array in named.items()}, []
    elif len(model.inputs) == 1 and model.inputs[0].dtype == "string":  # the model vectorizes raw text
        x, names, notes = read_texts(inputs), [path.name for path in inputs], []
    else:
        shape = tuple(int(d) for d in dataset["input_shape"])
        x, names, notes = read_inputs(inputs, shape)
    return RunInputs(model, x, names, notes, dataset)


def predict(run_dir: Path, inputs: list[Path], *, best: bool = False, batch_size: int = 256,
            trust_code: bool = False) -> Predictions:
    """Run a trained run's model (model.keras, or best.keras with `best`) on the given input files."""
    read = read_run_inputs(run_dir, inputs, best=best, trust_code=trust_code)
    outputs = read.model.predict(read.x, batch_size=batch_size, verbose=0)
    return predictions(read.names, outputs, read.dataset, read.notes)
