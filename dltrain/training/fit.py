"""`model.fit` with the run folder recording every epoch: the checkpoint, history, status and report callbacks
around it, and every way it can stop turned into its ending."""

from __future__ import annotations

import math
import shutil
import signal
from pathlib import Path
from typing import Any, Sequence

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain import runs
from dltrain.config import LoadedConfig
from dltrain.data import fit_datasets
from dltrain.errors import DltrainError
from dltrain.runs import Checkpoint, EpochRecorder, warm_up, write_history
import dltrain.training.phases as phases
import dltrain.training.report as report
from dltrain.training.endings import ended
from dltrain.training.finish import finish
from dltrain.training.guard import Guard
from dltrain.training.prepare import Prepared
from dltrain.training.progress import RichProgress
from dltrain.training.result import TrainResult


def fit(loaded: LoadedConfig, prepared: Prepared, run_dir: Path, start: Checkpoint | None, *, progress: bool,
        callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Fit from `start` (or from scratch), recording every epoch; then test, save and report the run."""
    config = loaded.config
    model, splits = prepared.model, prepared.splits
    epochs, batch_size = config.training.epochs, config.training.batch_size
    distribution = prepared.distribution
    datasets = distribution.datasets(fit_datasets(splits, config.training, config.seed, list(model.output_names),
                                                  prepared.augmentation, worker=distribution.worker))

    history = start.history if start else []
    recorder = EpochRecorder(run_dir, loaded.resolved(), epochs, history, start.phases_done if start else 0)
    write_history(run_dir / runs.HISTORY_FILE, history)  # drop rows of epochs not checkpointed
    guard = Guard()
    try:
        extras = report.RunExtras(loaded, run_dir, history, prepared.callbacks, splits.val is not None,
                                  tracked=distribution.is_chief)
    except DltrainError:
        if start is None:  # nothing trained yet (MLflow unreachable): leave no half-made run behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    plan = phases.plan(loaded)
    where = phases.position(plan, start)
    bar = RichProgress(epochs, math.ceil(len(splits.train) / batch_size)) if progress else None
    # One Keras fit per phase; the bar sees them as one training.
    spanning = [phases.Spanning(bar, len(plan) - where.index)] if bar is not None else []
    initial_epoch = start.epoch if start else 0
    runs.write_status(run_dir, "running", epoch=initial_epoch, epochs=epochs)
    warm_up()  # the report after the last epoch needs pyplot; its import overlaps the training
    with guard.handling_signals():
        try:
            for phase in plan[where.index:]:
                first = where.first_epoch
                if phase.index > where.index:  # the run stands in phase where.index already (prepare, resume)
                    first = len(recorder.rows)
                    phases.enter(model, loaded, phase, lambda spec, path: prepared.compile(loaded, spec, path))
                    prepared.callbacks = phases.build_callbacks(loaded, phase)
                if phases.phased(loaded):
                    recorder.phase = phase.index + 1
                # The guard goes first: no later callback sees a batch after a signal or a non-finite loss. The
                # recorder goes after the user's callbacks, so a checkpoint holds what they changed (a reduced
                # LR). TensorBoard, best.keras and MLflow come after the checkpoint: it must not be missed.
                every: list[Any] = [guard, datasets.randomness, *prepared.callbacks, recorder, *extras.callbacks(),
                                    *callbacks, *spanning]
                model.fit(datasets.train, validation_data=datasets.validation, epochs=first + phase.epochs,
                          initial_epoch=len(recorder.rows), callbacks=every, shuffle=False, verbose=0,
                          class_weight=prepared.class_weight)  # the tf.data pipeline shuffles
                if phases.phased(loaded):
                    recorder.phase_over()
        except Exception as error:
            if bar is not None:
                bar.close()
            ending = ended(error, loaded, prepared, run_dir, recorder, extras, fresh=start is None)
            if ending is error:
                raise
            raise ending from None
        # A signal from here on lets the run finish (evaluating and saving take seconds); a second one
        # ends the process at once, and every file is still whole.
        result = None
        try:
            result = finish(loaded, prepared, run_dir, datasets.test, recorder, extras,
                            stage=bar.stage if bar is not None else lambda text: None)
        finally:
            if bar is not None:
                bar.close("finished: test split scored, model and report saved" if result else None)
        result.late_signal = guard.signal_number
        if guard.signal_number is not None:
            result.notes.append(f"{signal.Signals(guard.signal_number).name} arrived while the run was finishing; "
                                "it finished and saved everything")
        return result
