"""Use a trained run on new inputs: its model, read with Keras's safe_mode, on raw input files or request bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain import runs
from dltrain.predict.answers import Predictions, predictions
from dltrain.predict.bodies import Input
from dltrain.predict.inputs import read_inputs, read_named, read_series, read_texts
from dltrain.predict.masks import class_indices, write_masks

# Where a segmentation run's predicted masks go unless told otherwise.
PREDICTIONS_DIR = "predictions"


@dataclass
class LoadedRun:
    """A run's model (read with Keras's safe_mode), its file, its config's name and its dataset.json."""

    model: Any
    model_file: Path
    name: str
    dataset: dict[str, Any]

    @property
    def kind(self) -> str:
        """How raw inputs reach the model: "series" (windows of a table's rows), "table" (named columns), "text"
        (raw strings) or "arrays"."""
        from dltrain.model import is_task, takes_text

        if self.dataset.get("series"):
            return "series"
        if is_task(self.model) and takes_text(self.model):  # a KerasHub text task tokenizes raw text
            return "text"
        if self.dataset.get("features"):
            return "table"
        if len(self.model.inputs) == 1 and self.model.inputs[0].dtype == "string":
            return "text"
        return "arrays"

    def inputs(self) -> list[Input]:
        """Each model input as raw inputs give it: a table's columns one value each, a text run's string, or
        arrays of the dataset's input shape (an image's height x width [x channels])."""
        if self.kind == "table":
            return [Input(t.name, str(t.dtype), tuple(t.shape[1:])) for t in self.model.inputs]
        if self.kind == "text":
            return [Input(getattr(self.model.inputs[0], "name", "text"), "string", ())]
        shape = tuple(int(d) for d in self.dataset["input_shape"])
        return [Input(t.name, str(t.dtype), shape if len(self.model.inputs) == 1 else tuple(t.shape[1:]))
                for t in self.model.inputs]

    def aliases(self) -> dict[str, str]:
        """A table's column names (as its CSV header has them) -> the model's input names."""
        from dltrain.data import input_name

        return {column: input_name(column) for column in self.dataset.get("features") or []}


@dataclass
class RunInputs:
    """A run's model (read with Keras's safe_mode) and raw input files read the way it takes them."""

    model: Any
    x: Any
    names: list[str]
    notes: list[str]
    dataset: dict[str, Any]


def load_run(run_dir: Path, *, best: bool = False, trust_code: bool = False) -> LoadedRun:
    """Load the run's model (model.keras, or best.keras with `best`) with Keras's safe_mode.

    `trust_code`: the user's word that the run's custom objects may be imported (dltrain.trust)."""
    from dltrain.load import load_config
    from dltrain.model import load_model

    loaded = load_config(runs.run_file(run_dir, runs.CONFIG_FILE), trust_code=trust_code)
    model_file = runs.run_file(run_dir, runs.BEST_FILE if best else runs.MODEL_FILE)
    dataset = json.loads(runs.run_file(run_dir, runs.DATASET_FILE).read_text())
    return LoadedRun(load_model(model_file, loaded), model_file, loaded.config.name, dataset)


def read_run_inputs(run_dir: Path, inputs: list[Path], *, best: bool = False, trust_code: bool = False) -> RunInputs:
    """Load the run's model (model.keras, or best.keras with `best`) and read `inputs` as it takes them."""
    run = load_run(run_dir, best=best, trust_code=trust_code)
    model = run.model
    if run.kind == "series":  # a forecaster: windows of rows, cut as the run cut them
        (x, names), notes = read_series(inputs, run.dataset["series"]), []
    elif run.kind == "table":  # named raw inputs (table columns): read the rows by header
        texts = {t.name for t in model.inputs if t.dtype == "string" and len(t.shape) == 1}
        named, names = read_named(inputs, {t.name: t.dtype for t in model.inputs}, texts)
        import tensorflow as tf

        x, notes = {name: tf.constant(array) for name, array in named.items()}, []
    elif run.kind == "text":  # the model vectorizes raw text
        x, names, notes = read_texts(inputs), [path.name for path in inputs], []
    else:
        x, names, notes = read_inputs(inputs, run.inputs()[0].shape, sampling_rate=run.dataset.get("sampling_rate"))
    return RunInputs(model, x, names, notes, run.dataset)


def predict(run_dir: Path, inputs: list[Path], *, best: bool = False, batch_size: int = 256,
            trust_code: bool = False, masks_dir: Path | None = None) -> Predictions:
    """Run a trained run's model (model.keras, or best.keras with `best`) on the given input files; a
    segmentation run writes a mask PNG per input into `masks_dir` (default: RUN/predictions)."""
    read = read_run_inputs(run_dir, inputs, best=best, trust_code=trust_code)
    outputs = read.model.predict(read.x, batch_size=batch_size, verbose=0)
    if read.dataset.get("task") == "segmentation":
        written = write_masks(inputs, read.names, outputs, masks_dir or run_dir / PREDICTIONS_DIR)
        found = Predictions(read.names, class_indices(outputs), None, read.dataset.get("class_names"), read.notes)
        found.masks = written
        return found
    return predictions(read.names, outputs, read.dataset, read.notes)
