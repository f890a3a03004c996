"""What every loaded export offers: called with one array per model input, it returns the outputs in the
model's order; `facts` says which runtime ran it and with which ops."""

from __future__ import annotations

import re
from importlib import metadata
from typing import Any

import numpy as np

from dltrain.export.unsupported import ExportError
from dltrain.predict import model_feed, output_list


class Runtime:
    """An export loaded in the runtime that serves it."""

    facts: dict[str, Any]

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


def version(package: str) -> str | None:
    """An installed distribution's version, or None."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def match_inputs(model_names: list[str], runtime_names: list[str], what: str) -> list[str]:
    """The runtime's name for each model input: the same name, or the only input of a one-input model
    (Keras's SavedModel signature calls it `keras_tensor`)."""
    if len(model_names) == 1 and len(runtime_names) == 1:
        return list(runtime_names)
    if sorted(model_names) != sorted(runtime_names):
        raise ExportError(f"{what} takes the inputs {', '.join(runtime_names)}; the model takes "
                          f"{', '.join(model_names)}", hint="was it exported from this run's model?")
    return list(model_names)


def ordered_outputs(outputs: dict[str, Any]) -> list[np.ndarray]:
    """A signature's outputs (`output_0`, `output_1`, ... as Keras names them) in the model's order."""
    def index(name: str) -> tuple[int, str]:
        found = re.search(r"(\d+)$", name)
        return (int(found.group(1)) if found else -1, name)

    return [np.asarray(outputs[name]) for name in sorted(outputs, key=index)]


class KerasRuntime(Runtime):
    """A Keras model (a reloaded .keras file, or weights loaded into the architecture) run by `predict_on_batch`."""

    def __init__(self, model: Any, source: str) -> None:
        import keras

        self.model = model
        self.facts = {"runtime": f"keras {keras.__version__} ({source})"}

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return output_list(self.model, self.model.predict_on_batch(model_feed(self.model, arrays)))
