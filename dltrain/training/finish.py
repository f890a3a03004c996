"""After the last epoch: score the test split, save the model, write metrics.json, draw the report."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain import data, runs
from dltrain.config import LoadedConfig
from dltrain.errors import first_line
from dltrain.runs import EpochRecorder
import dltrain.training.report as report
import dltrain.training.segments as segments
from dltrain.training.prepare import Prepared
from dltrain.training.result import TrainResult
from dltrain.training.scoring import score


def finish(loaded: LoadedConfig, prepared: Prepared, run_dir: Path, test_ds: Any, recorder: EpochRecorder,
           extras: report.RunExtras, stage: Callable[[str], None] = lambda text: None) -> TrainResult:
    """Score the test split, save model.keras and metrics.json, draw the plots, mark the run finished.

    `stage` is told what is being done, so the user never watches a silent terminal."""
    model, splits = prepared.model, prepared.splits
    epochs = loaded.config.training.epochs
    stage("scoring the test split")
    drawing = report.Drawing(run_dir, recorder.rows, splits)  # the curves are drawn meanwhile
    try:
        scored = score(model, test_ds)  # one pass: the metrics, and the outputs the plots need
    except BaseException as error:
        drawing.cancel()
        # A damaged file or record among the streamed test examples (or a mask value beyond the classes): named,
        # as during training; the checkpoints stay, so the run resumes once the file is fixed.
        found = data.damaged(splits.test) if isinstance(error, Exception) and data.is_data_error(error) else None
        if found is None:
            raise
        runs.write_status(run_dir, "failed", epoch=len(recorder.rows), epochs=epochs, message=first_line(found))
        raise found from None
    test = scored.metrics
    stage("saving model.keras and drawing the plots")
    drawing.test_outputs(scored.outputs)
    runs.save_model(model, run_dir / runs.MODEL_FILE)
    # The train and val rows come from the epoch whose weights were tested: the last one, or the one
    # EarlyStopping(restore_best_weights=True) went back to.
    weights_epoch = _restored_epoch(prepared.callbacks) or len(recorder.rows)
    row = next((r for r in recorder.rows if int(r.get("epoch", 0)) == weights_epoch),
               recorder.rows[-1] if recorder.rows else None)
    train_metrics, val_metrics = _split_logs(row) if row else ({}, {})
    train_metrics.pop("epoch", None)
    train_metrics.pop("seconds", None)
    train_metrics.pop("phase", None)
    metrics = {"train": train_metrics, "val": val_metrics, "test": test}
    # A segmentation's figure per class, from the outputs just scored (a classifier's is the confusion matrix).
    per_class = ({"per_class_iou": segments.per_class_iou(splits.test, scored.outputs, splits.info.class_names or [])}
                 if splits.info.masks else {})
    runs.atomic_write_json(run_dir / runs.METRICS_FILE,
                           {**metrics, **per_class, "epochs": len(recorder.rows), "weights_epoch": weights_epoch,
                            "epoch_seconds": recorder.epoch_seconds})
    drawn = drawing.wait()
    stage("closing the run")
    notes = extras.finish(test, len(recorder.rows)) + drawn
    runs.write_status(run_dir, "finished", epoch=len(recorder.rows), epochs=epochs)
    return TrainResult(run_dir, metrics, len(recorder.rows), recorder.epoch_seconds, notes=splits.info.notes + notes,
                       weights_epoch=weights_epoch, tensorboard_dir=extras.tensorboard_dir)


def _split_logs(logs: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    train = {k: float(v) for k, v in logs.items() if not k.startswith("val_")}
    val = {k[4:]: float(v) for k, v in logs.items() if k.startswith("val_")}
    return train, val


def _restored_epoch(user_callbacks: list) -> int | None:
    """The epoch (1-based) whose weights an EarlyStopping with restore_best_weights put back, if any."""
    for callback in user_callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.restore_best_weights \
                and callback.best_weights is not None:
            return int(callback.best_epoch) + 1
    return None
