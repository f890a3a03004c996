"""Saved models read back: a `.keras` file with Keras's safe_mode, and a run folder's final model."""

from __future__ import annotations

import warnings
from pathlib import Path

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.errors import DltrainError, first_line
from dltrain.load import load_config
import dltrain.model.registry as registry
from dltrain.trust import require_trust


def load_model(path: Path, loaded: LoadedConfig | None = None) -> keras.Model:
    """Load a saved `.keras` model; safe_mode stays on unless the model's own config turned it off
    (and the user trusts that config: dltrain.trust)."""
    if loaded is not None:
        require_trust(loaded)
    custom = registry.custom_objects(loaded) if loaded is not None else {}
    safe = loaded.config.safe_mode if loaded is not None else True
    try:
        with warnings.catch_warnings():
            # KerasHub tasks compile themselves; Keras warns that it cannot, and that a run's optimizer
            # state (kept in the checkpoint, not needed here) is skipped.
            warnings.filterwarnings("ignore", message=r"`compile\(\)` was not called", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"Skipping variable loading for optimizer", category=UserWarning)
            return keras.saving.load_model(path, custom_objects=custom, safe_mode=safe)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise DltrainError(f"cannot load model {path}: {first_line(error)}",
                           hint="is it a .keras file written by dltrain or Keras 3?") from None


def load_run_model(run_dir: Path, *, trust_code: bool = False) -> keras.Model:
    """The final model of a run folder, with the custom objects its config lists (`trust_code`: dltrain.trust)."""
    loaded = load_config(runs.run_file(run_dir, runs.CONFIG_FILE), trust_code=trust_code)
    return load_model(runs.run_file(run_dir, runs.MODEL_FILE), loaded)
