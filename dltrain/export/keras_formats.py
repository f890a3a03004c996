"""Keras's own formats: a .keras file, a weights file, and a TensorFlow SavedModel; each written, then loaded
back the way a user would load it."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dltrain import runs
from dltrain.export.runtime import KerasRuntime, Runtime, match_inputs, ordered_outputs, version


def write_keras(model: Any, out: Path, load: Callable[[Path], Any]) -> Runtime:
    """Save `model` as a .keras file and load it back (safe_mode, as `dltrain` loads every model)."""
    runs.save_model(model, out)
    return KerasRuntime(load(out), "reloaded .keras file")


def write_weights(model: Any, out: Path, load: Callable[[Path], Any], source: Path) -> Runtime:
    """Save the weights, then load them into a second copy of the model (from `source`) whose weights were
    zeroed first, so every number it computes comes from the file."""
    with runs.atomic_path(out) as tmp:
        model.save_weights(tmp)
    fresh = load(source)
    fresh.set_weights([np.zeros_like(w) for w in fresh.get_weights()])
    fresh.load_weights(out)
    return KerasRuntime(fresh, "weights loaded into the architecture")


def export_savedmodel(model: Any, out: Path) -> None:
    """Write a SavedModel folder (Keras's `serve` endpoint), built beside the target and swapped in whole."""
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.export(staging / "model", format="tf_saved_model", verbose=False)
        if out.exists():
            shutil.rmtree(out)
        (staging / "model").rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class SavedModelRuntime(Runtime):
    """A SavedModel reloaded with `tf.saved_model.load` and called through its serving signature."""

    def __init__(self, path: Path, model_inputs: list[str]) -> None:
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))  # the signature needs this object's variables alive
        self.signature = self.loaded.signatures["serving_default"]
        _, named = self.signature.structured_input_signature
        self.names = match_inputs(model_inputs, list(named), f"the SavedModel {path}")
        self.facts = {"runtime": f"tensorflow {version('tensorflow')} (tf.saved_model.load)",
                      "op_set": "TensorFlow", "signature": "serving_default"}

    def __call__(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import tensorflow as tf

        outputs = self.signature(**{name: tf.constant(array) for name, array in zip(self.names, arrays)})
        return ordered_outputs({name: tensor.numpy() for name, tensor in outputs.items()})


def export_task_savedmodel(model: Any, out: Path) -> None:
    """A KerasHub task as a SavedModel whose `serving_default` takes raw inputs (strings or images): its
    preprocessor and the model in one graph (loading it needs `import tensorflow_text` for text tasks)."""
    import tensorflow as tf

    from dltrain.model import takes_text

    preprocessor = model.preprocessor
    text = takes_text(model)
    spec = tf.TensorSpec([None], tf.string, name="inputs") if text else \
        tf.TensorSpec([None, None, None, None], tf.float32, name="inputs")

    class Serving(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.preprocessor = model, preprocessor

        @tf.function(input_signature=[spec])
        def serve(self, inputs: Any) -> Any:
            return self.model(self.preprocessor(inputs), training=False)

    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        module = Serving()
        tf.saved_model.save(module, str(staging / "model"), signatures={"serving_default": module.serve})
        if out.exists():
            shutil.rmtree(out)
        (staging / "model").rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_savedmodel(model: Any, out: Path) -> Runtime:
    """Export a SavedModel folder and reload it."""
    from dltrain.model import is_task

    if is_task(model):
        import tensorflow_text  # noqa: F401  (registers the tokenizer ops the SavedModel's graph holds)

        export_task_savedmodel(model, out)
        return SavedModelRuntime(out, ["inputs"])
    export_savedmodel(model, out)
    return SavedModelRuntime(out, [t.name for t in model.inputs])
