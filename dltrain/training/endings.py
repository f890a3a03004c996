"""How a fit that did not finish ends: stopped by a signal, diverged, or failed; each leaves the run
folder whole, with the last good checkpoint and a status that says what happened."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import numpy as np

from dltrain import data, runs
from dltrain.config import LoadedConfig
from dltrain.distribute import lost_worker
from dltrain.errors import RunDiverged, RunInterrupted, first_line
from dltrain.runs import CHECKPOINT_FILE, EpochRecorder, NonFiniteWeights, load_checkpoint, restore_checkpoint
import dltrain.training.report as report
from dltrain.training.guard import NonFiniteLoss, StopRequested
from dltrain.training.prepare import Prepared
from dltrain.training.result import TrainingError


def ended(error: Exception, loaded: LoadedConfig, prepared: Prepared, run_dir: Path, recorder: EpochRecorder,
          extras: report.RunExtras, *, fresh: bool) -> Exception:
    """The error to raise for an exception out of `fit` (the same one when it is nobody's to translate)."""
    if isinstance(error, StopRequested):
        extras.end("KILLED")
        return _interrupted(prepared.model, run_dir, recorder, error)
    extras.end("FAILED")
    lost = lost_worker(error)  # a collective that broke off: another worker of the job is gone
    if lost is not None:
        runs.write_status(run_dir, "failed", epoch=len(recorder.rows), epochs=recorder.epochs, message=lost.message)
        return lost
    if isinstance(error, (NonFiniteLoss, NonFiniteWeights)):
        return _diverged(prepared.model, run_dir, recorder, error)
    splits = prepared.splits
    # A damaged file among streamed examples: TensorFlow's decoder does not say which one.
    unreadable = data.damaged(splits.train, splits.val, splits.test) if data.is_data_error(error) else None
    # Nothing was trained in a new run: leave no half-made run behind.
    if fresh and not recorder.rows and int(keras.ops.convert_to_numpy(prepared.model.optimizer.iterations)) == 0:
        shutil.rmtree(run_dir, ignore_errors=True)
        return unreadable or TrainingError(f"training failed at the first step: {first_line(error)}",
                                           where=loaded.locate(("model",)), key="model")
    runs.write_status(run_dir, "failed", epoch=len(recorder.rows), epochs=recorder.epochs,
                      message=first_line(unreadable or error))
    return unreadable or error


def _finite(model: keras.Model) -> bool:
    return all(np.isfinite(keras.ops.convert_to_numpy(w)).all() for w in model.weights
               if np.issubdtype(np.dtype(w.dtype), np.floating))


def _interrupted(model: keras.Model, run_dir: Path, recorder: EpochRecorder, stop: StopRequested) -> RunInterrupted:
    """Save the model as it is now (the checkpoint of the last whole epoch is already on disk)."""
    name = signal.Signals(stop.signal_number).name
    done = len(recorder.rows)
    saved = "the checkpoint"
    if _finite(model):
        runs.save_model(model, run_dir / runs.MODEL_FILE)
        saved = "the model and the checkpoint"
    runs.write_status(run_dir, "interrupted", epoch=done, epochs=recorder.epochs, message=f"stopped by {name}")
    return RunInterrupted(f"stopped by {name} in epoch {stop.epoch + 1}/{recorder.epochs}; {saved} after "
                          f"epoch {done} saved in {run_dir}",
                          signal_number=stop.signal_number, hint=f"resume with: {runs.resume_command(run_dir)}")


def _diverged(model: keras.Model, run_dir: Path, recorder: EpochRecorder, error: Exception) -> RunDiverged:
    """Keep the last finite checkpoint and write model.keras from it, never from the broken weights."""
    message = f"training diverged: {error}"
    if isinstance(error, NonFiniteLoss):
        # No step number: with steps_per_execution > 1 Keras reports only the end of a group of steps.
        message = f"training diverged: the loss became {error.value} in epoch {error.epoch + 1}"
    last = load_checkpoint(run_dir)
    if last is None:
        kept = "no epoch finished, so no model was saved"
    else:
        restore_checkpoint(model, last)
        runs.save_model(model, run_dir / runs.MODEL_FILE)
        kept = f"model.keras and {CHECKPOINT_FILE} hold the last finite weights (after epoch {last.epoch})"
    runs.write_status(run_dir, "diverged", epoch=len(recorder.rows), epochs=recorder.epochs, message=message)
    return RunDiverged(f"{message}; {kept}", hint="lower optimizer's learning_rate, or clip gradients "
                                                   "(clipnorm) in the optimizer's arguments")
