"""What a run folder holds besides checkpoints: overrides, environment, model summary, TensorBoard logs,
best.keras, plots and (optionally) MLflow tracking. training/ calls in here at the start and the end."""

from __future__ import annotations

import importlib.util
import os
import queue
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import numpy as np

from dltrain import data, runs
from dltrain.config import LoadedConfig
from dltrain.errors import first_line
from dltrain.load import load_config
from dltrain.model import load_model
from dltrain.predict import class_probabilities
from dltrain.runs import BestModel, MlflowTracker, draw_curves, monitored, record_env, tracking_settings
from dltrain.trust import require_trust
import dltrain.training.segments as segments

OVERRIDES_FILE = "overrides.txt"
SUMMARY_FILE = "summary.txt"
TENSORBOARD_DIR = "tensorboard"


def model_summary(model: keras.Model) -> str:
    """Keras's model summary as plain text."""
    lines: list[str] = []
    # Keras renders the summary on a Rich console that is 80 columns wide when not on a terminal (and
    # crops the table's last column); Rich and Keras both size it from $COLUMNS.
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "104"
    try:
        model.summary(print_fn=lambda line, *args, **kwargs: lines.append(line), line_length=100)
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines).rstrip() + "\n"


def write_start(run_dir: Path, loaded: LoadedConfig, model: keras.Model,
                distribute: dict[str, Any] | None = None) -> None:
    """overrides.txt (the --set lines), env.json (with the `distribute` strategy used) and summary.txt of a new run."""
    runs.atomic_write_text(run_dir / OVERRIDES_FILE, "".join(line + "\n" for line in loaded.overrides))
    record_env(run_dir, loaded.resolved(), loaded.path, distribute=distribute)
    runs.atomic_write_text(run_dir / SUMMARY_FILE, model_summary(model))


def write_resume(run_dir: Path, loaded: LoadedConfig, changed: bool, distribute: dict[str, Any] | None = None) -> None:
    """A resume adds its environment to env.json, and its --set lines to overrides.txt when they changed the run."""
    record_env(run_dir, loaded.resolved(), loaded.path, resumed=True, distribute=distribute)
    if changed and loaded.overrides:
        path = run_dir / OVERRIDES_FILE
        before = path.read_text() if path.is_file() else ""
        stamp = datetime.now().isoformat(timespec="seconds")
        lines = "".join(line + "\n" for line in loaded.overrides)
        runs.atomic_write_text(path, f"{before}# resumed with --force at {stamp}:\n{lines}")


class RunExtras:
    """The callbacks that record a run beyond its checkpoints, and what they write when it ends."""

    def __init__(self, loaded: LoadedConfig, run_dir: Path, past: list[dict[str, float]],
                 user_callbacks: list[Any], has_validation: bool, *, tracked: bool = True):
        self.run_dir = run_dir
        self.notes: list[str] = []
        self.tensorboard = None
        if loaded.config.training.tensorboard:
            if importlib.util.find_spec("tensorboard") is None:
                self.notes.append("TensorBoard logs not written: the tensorboard package is not installed "
                                  "(pip install tensorboard)")
            else:
                # Steps are epoch numbers, so a resumed run's curves continue where they stopped.
                self.tensorboard = keras.callbacks.TensorBoard(str(run_dir / TENSORBOARD_DIR), write_graph=True)
        monitor, mode = monitored(user_callbacks, has_validation)
        self.best = BestModel(run_dir, monitor, mode, past)
        settings = tracking_settings(loaded) if tracked else None  # one MLflow run: the chief's
        self.tracker = MlflowTracker(settings, run_dir, loaded.resolved()) if settings else None

    def callbacks(self) -> list[keras.callbacks.Callback]:
        """TensorBoard, best.keras and MLflow, those that are on."""
        return [c for c in (self.tensorboard, self.best, self.tracker) if c is not None]

    @property
    def tensorboard_dir(self) -> Path | None:
        """Where TensorBoard logs go, when they are written."""
        return self.run_dir / TENSORBOARD_DIR if self.tensorboard is not None else None

    def finish(self, test: dict[str, float], epochs: int) -> list[str]:
        """Close the MLflow run (after the plots: it logs them); returns notes for the user."""
        if self.tracker is not None:
            self.tracker.finish(test, epochs)
        return self.notes

    def end(self, status: str) -> None:
        """Training stopped early: flush the TensorBoard logs (Keras skips on_train_end when fit raises)
        and mark the MLflow run KILLED or FAILED."""
        if self.tensorboard is not None:
            try:
                self.tensorboard.on_train_end()
            except Exception:  # nothing may hide why training stopped
                pass
        if self.tracker is not None:
            self.tracker.end(status)


class Drawing:
    """The run's plots, drawn on a thread of their own after the last epoch: the curves while the test split
    is scored, the test plots while the model is saved. Matplotlib's drawing and TensorFlow's work each take
    about a second there, and neither needs the other until the test outputs exist."""

    def __init__(self, run_dir: Path, rows: list[dict[str, float]], splits: data.Splits) -> None:
        self.run_dir = run_dir
        self.written: list[Path] = []
        self.error: Exception | None = None
        self._outputs: queue.Queue[tuple[Any] | None] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._draw, args=(rows, splits), name="dltrain-plots")
        self._thread.start()

    def _draw(self, rows: list[dict[str, float]], splits: data.Splits) -> None:
        try:
            self.written = draw_curves(self.run_dir, rows)
        except Exception as error:  # a plot must never cost the user a trained run
            self.error = error
        given = self._outputs.get()
        if given is None or self.error is not None:
            return
        try:
            self.written += draw_test_plots(self.run_dir, splits, given[0])
        except Exception as error:
            self.error = error

    def test_outputs(self, outputs: Any) -> None:
        """The model's outputs on the test split: the confusion matrix and the mistakes are drawn from them."""
        self._outputs.put((outputs,))

    def cancel(self) -> None:
        """No test outputs will come (scoring failed): the thread ends after the curves."""
        self._outputs.put(None)

    def wait(self) -> list[str]:
        """Wait for the plots; a note for the user when they could not be drawn."""
        self._thread.join()
        if self.error is None:
            return []
        return [f"plots not drawn: {first_line(self.error)} (try: dltrain plot {self.run_dir})"]


def draw_test_plots(run_dir: Path, splits: data.Splits, outputs: Any) -> list[Path]:
    """Confusion matrix and misclassified examples of a classifier's test split, from the model's outputs
    on it; forecasts against the truth for a time series; per_class.csv and its bars for multi-label tags
    (nothing for other models)."""
    info = splits.info
    if info.masks:
        return segments.draw_test_plots(run_dir, splits, outputs)
    labels = splits.test.y
    if info.series is not None and len(labels):
        return [runs.draw_forecast(run_dir, np.asarray(labels), _first(outputs), info.series["labels"],
                                   info.series["horizon"])]
    if info.multi_label and len(labels):
        probabilities, _ = class_probabilities(outputs, info.num_classes, multi_label=True)
        if probabilities is None:
            return []
        rows = runs.per_class(np.asarray(labels), probabilities, info.class_names)
        return [runs.write_per_class(run_dir, rows), runs.draw_per_class(run_dir, rows)]
    if not info.num_classes or labels.ndim != 1 or not len(labels):
        return []
    probabilities, _ = class_probabilities(outputs, info.num_classes)
    if probabilities is None:
        return []
    names = info.class_names or [str(i) for i in range(info.num_classes)]
    test = splits.test
    if isinstance(test, data.Streamed):
        x: Any = _Decoded(test)  # only the few pictures drawn are decoded
    elif isinstance(test.x, np.ndarray) and np.issubdtype(test.x.dtype, np.number):
        x = test.x
    else:  # named features (table columns) and texts are not pictures: only the confusion matrix
        x = np.empty((len(labels), 0))
    return runs.draw_test_plots(run_dir, x, np.asarray(labels), probabilities, names)


def _first(outputs: Any) -> np.ndarray:
    """The first output of a model's outputs (one array, a list or a dict)."""
    if isinstance(outputs, dict):
        outputs = next(iter(outputs.values()))
    elif isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    return np.asarray(outputs)


class _Decoded:
    """A streamed split's examples for the plots, decoded one at a time when indexed."""

    def __init__(self, split: data.AnySplit) -> None:
        self.split = split
        self.shape = (len(split), *split.element_shape)

    def __getitem__(self, index: int) -> np.ndarray:
        return data.examples(self.split, [index]).x[0]


def redraw(run_dir: Path, *, test_plots: bool = True, trust_code: bool = False) -> list[Path]:
    """`dltrain plot`: the curves from history.csv (also while training runs), then, for a run with a saved
    model that is not training, the test-split plots (`trust_code`: dltrain.trust)."""
    config_file = runs.run_file(run_dir, runs.CONFIG_FILE)
    info = runs.run_info(run_dir)
    loaded = None
    if test_plots and info is not None and info.state != "running" and (run_dir / runs.MODEL_FILE).is_file():
        loaded = load_config(config_file, trust_code=trust_code)
        require_trust(loaded)  # before anything is drawn: the command would stop half-way
    written = draw_curves(run_dir)
    if loaded is not None:
        splits = data.load(loaded.config.dataset, loaded.config.seed)
        model = load_model(run_dir / runs.MODEL_FILE, loaded)
        # Predictions stream through tf.data: a test folder of streamed files is never held in memory.
        outputs = model.predict(data.to_dataset(splits.test, loaded.config.training.batch_size), verbose=0)
        written += draw_test_plots(run_dir, splits, outputs)
    return written
