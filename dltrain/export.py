"""Export a run's trained model as a .keras file, a TensorFlow SavedModel, or weights."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from dltrain import runs
from dltrain.errors import DltrainError, RunError
from dltrain.saved import load_run_model

FORMATS = ("keras", "savedmodel", "weights")
_DEFAULT_NAMES = {"keras": "model.keras", "savedmodel": "savedmodel", "weights": "model.weights.h5"}


def export_model(run_dir: Path, fmt: str, out: Path | None = None, *, overwrite: bool = False,
                 trust_code: bool = False) -> Path:
    """Write the run's model in `fmt` to `out` (default: inside `<run>/export/`) and return the path.

    `trust_code`: the user's word that the run's custom objects may be imported (dltrain.trust)."""
    if fmt not in FORMATS:
        raise DltrainError(f"unknown format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}")
    runs.run_file(run_dir, runs.MODEL_FILE)  # a missing model is the first thing to report
    out = out or run_dir / "export" / _DEFAULT_NAMES[fmt]
    if fmt == "weights" and not out.name.endswith(".weights.h5"):
        raise DltrainError(f"weights files must end in .weights.h5, got '{out.name}'",
                           hint=f"for example --out {out.with_name('model.weights.h5')}")
    if fmt == "keras" and out.suffix != ".keras":
        raise DltrainError(f"Keras model files must end in .keras, got '{out.name}'")
    if out.exists() and not overwrite:
        raise RunError(f"'{out}' already exists", hint="choose another --out or pass --overwrite")
    model = load_run_model(run_dir, trust_code=trust_code)  # before anything is written
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "keras":
        runs.save_model(model, out)
    elif fmt == "weights":
        with runs.atomic_path(out) as tmp:
            model.save_weights(tmp)
    else:
        # A SavedModel is a folder: build it beside the target, then swap it in whole.
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        try:
            model.export(staging / "model", format="tf_saved_model", verbose=False)
            if out.exists():
                shutil.rmtree(out)
            (staging / "model").rename(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return out
