"""A new run, start to end: prepare (data, model, checks) -> a run folder -> fit -> finish."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.model import custom_folders
import dltrain.training.report as report
from dltrain.training.fit import fit
from dltrain.training.prepare import prepare
from dltrain.training.result import TrainResult


def train(loaded: LoadedConfig, output_dir: Path = Path("outputs"), *, progress: bool = True,
          callbacks: Sequence[keras.callbacks.Callback] = (), folder_name: str | None = None) -> TrainResult:
    """Train the configured model; write config, history, checkpoints, model and metrics to a new run folder.

    `callbacks` are extra Keras callbacks (a sweep's pruner), called after the run's own each epoch.
    `folder_name`: the run folder's exact name in `output_dir` (a cv fold's `fold-2`), else `<name>-<timestamp>`."""
    loaded.config.sweep = None  # a run trains the config's own values: its config.yaml has no sweep section
    prepared = prepare(loaded)  # every mistake found without training is raised before a folder exists
    distribution = prepared.distribution
    # Only the chief writes the run folder; another worker writes the same files into a temporary one.
    run_dir = distribution.new_run_folder(output_dir, loaded.config.name, folder_name)
    with distribution.taking_part():
        runs.atomic_write_yaml(run_dir / runs.CONFIG_FILE, loaded.resolved())
        runs.atomic_write_json(run_dir / runs.DATASET_FILE, prepared.splits.info.to_json())
        if loaded.config.custom_objects:
            runs.atomic_write_text(run_dir / runs.PYTHONPATH_FILE,
                                   "".join(f + "\n" for f in custom_folders(loaded)))
        report.write_start(run_dir, loaded, prepared.model, distribution.describe())
        return distribution.finished(fit(loaded, prepared, run_dir, None, progress=progress, callbacks=callbacks))
