"""Compile, fit and evaluate a model from a config, writing the run folder as it goes."""

from __future__ import annotations

import math
import shutil
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import numpy as np
import tensorflow as tf
import yaml

from dltrain import checkpoint, data, registry, report, runs, threads, tracking
from dltrain.checkpoint import Checkpoint, EpochRecorder, NonFiniteWeights
from dltrain.config import LoadedConfig, load_config
from dltrain.epochs import EpochRandomness
from dltrain.errors import DltrainError, ModelBuildError, RunDiverged, RunError, RunInterrupted, first_line
from dltrain.guard import Guard, NonFiniteLoss, StopRequested
from dltrain.model import build_model
from dltrain.progress import RichProgress


class TrainingError(DltrainError):
    """Keras could not train the model as configured (raised before the first step completes)."""


@dataclass
class TrainResult:
    """What a finished training run produced."""

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    epochs: int
    epoch_seconds: list[float] = field(default_factory=list)
    # The epoch a resumed run continued after (None for a fresh run), and what the user should know.
    resumed_from: int | None = None
    notes: list[str] = field(default_factory=list)
    # The epoch whose weights model.keras holds (earlier than `epochs` when EarlyStopping restored the best).
    weights_epoch: int | None = None
    tensorboard_dir: Path | None = None


def _losses(loaded: LoadedConfig) -> Any:
    loss = loaded.config.loss
    if per_output(loaded, loss):
        return {out: registry.build("loss", spec, loaded, ("loss", out)) for out, spec in loss.items()}
    return registry.build("loss", loss, loaded, ("loss",))


def _metrics(loaded: LoadedConfig, outputs: list[str]) -> Any:
    metrics = loaded.config.metrics
    if isinstance(metrics, dict):
        return {out: [registry.build("metric", m, loaded, ("metrics", out, i)) for i, m in enumerate(specs)]
                for out, specs in metrics.items()}
    if len(outputs) > 1:  # Keras wants metrics per output; each output gets its own metric objects
        return {out: [registry.build("metric", m, loaded, ("metrics", i)) for i, m in enumerate(metrics)]
                for out in outputs}
    return [registry.build("metric", m, loaded, ("metrics", i)) for i, m in enumerate(metrics)]


def per_output(loaded: LoadedConfig, value: Any) -> bool:
    """Whether a loss or metrics value is a mapping from output names (rather than one spec)."""
    outputs = loaded.config.model.outputs or []
    return isinstance(value, dict) and len(outputs) > 1 and set(value) <= set(outputs)


def compile_model(model: keras.Model, loaded: LoadedConfig) -> None:
    """Compile with the config's optimizer, loss, metrics and execution settings."""
    config = loaded.config
    model.compile(
        optimizer=registry.build("optimizer", config.optimizer, loaded, ("optimizer",)),
        loss=_losses(loaded),
        loss_weights=config.loss_weights,
        metrics=_metrics(loaded, list(model.output_names)),
        steps_per_execution=config.training.steps_per_execution,
        jit_compile=config.training.jit_compile,
    )


@contextmanager
def dtype_policy(name: str | bool) -> Iterator[None]:
    """Build layers under Keras's dtype policy `name` (False: unchanged); the global policy is restored after."""
    if not name:
        yield
        return
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _cache(cache: bool | str, name: str, split: data.AnySplit, batch_size: int) -> bool | str:
    """`training.cache` for one split: True/False as given; a path prefix becomes that split's own file."""
    if isinstance(cache, bool):
        return cache
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    return data.cache_file(cache, name, split, batch_size)


def build_callbacks(loaded: LoadedConfig) -> list[keras.callbacks.Callback]:
    """The config's `training.callbacks` as Keras callback objects."""
    return [registry.build("callback", spec, loaded, ("training", "callbacks", i))
            for i, spec in enumerate(loaded.config.training.callbacks)]


def check_inputs(model: keras.Model, loaded: LoadedConfig, splits: data.Splits) -> None:
    """The model's inputs must be what the dataset gives: one array, or one input per named feature."""
    if splits.preprocessing is not None:  # the model's inputs are the preprocessing's own
        return
    info = splits.info
    names = [t.name for t in model.inputs]
    if info.features is None and len(names) > 1:
        raise loaded.error(ModelBuildError, ("model", "inputs"),
                           f"the model has {len(names)} inputs ({', '.join(names)}) but dataset '{info.name}' gives "
                           "one array per example", hint="use a single input, or a dataset with named features")
    if info.features is not None and sorted(names) != sorted(info.features):
        raise loaded.error(ModelBuildError, ("model", "inputs") if loaded.config.model.inputs else ("model",),
                           f"dataset '{info.name}' gives the features {', '.join(info.features)} but the model's "
                           f"inputs are {', '.join(names)}",
                           hint="name one entry of model.inputs after each feature array")


def targets(model: keras.Model, y: Any) -> Any:
    """The labels as the model's outputs take them: the same array for every output of a multi-output model."""
    names = list(model.output_names)
    return {name: y for name in names} if len(names) > 1 else y


def for_model(model: keras.Model, dataset: Any) -> Any:
    """Give every output of a multi-output model the dataset's labels (auxiliary heads, deep supervision)."""
    if len(model.outputs) < 2:
        return dataset

    @tf.autograph.experimental.do_not_convert
    def repeat_labels(x: Any, y: Any) -> tuple[Any, Any]:
        return x, targets(model, y)

    return dataset.map(repeat_labels)


def _dry_run(model: keras.Model, loaded: LoadedConfig, splits: data.Splits) -> None:
    """Compute the loss on the examples with the smallest and largest labels, so a model that cannot fit
    the labels fails before any run folder exists."""
    labels = splits.train.y.reshape(len(splits.train.y), -1)[:, 0]
    pick = [int(labels.argmin()), int(labels.argmax())]
    few = data.examples(splits.train, pick)
    x, y = data.tensors(few.x), few.y
    try:
        model.compute_loss(x=x, y=targets(model, y), y_pred=model(x, training=False))
    except Exception as error:  # shape and dtype errors arrive as several TF/Keras types
        classes = splits.info.num_classes
        hint = f"the dataset has {classes} classes; check the last layer's units and the loss" if classes else None
        raise loaded.error(ModelBuildError, ("loss",),
                           f"the loss cannot compare the model's output {_shapes(model.outputs)} with the "
                           f"labels {tuple(splits.train.y.shape[1:]) or '(integers)'}: {first_line(error)}",
                           hint=hint) from None


def _shapes(tensors: list[Any]) -> str:
    return ", ".join(str(tuple(t.shape)) for t in tensors)


def _split_logs(logs: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    train = {k: float(v) for k, v in logs.items() if not k.startswith("val_")}
    val = {k[4:]: float(v) for k, v in logs.items() if k.startswith("val_")}
    return train, val


@dataclass
class Prepared:
    """A compiled model with its data, callbacks and training-batch augmentation, ready to fit."""

    model: keras.Model
    splits: data.Splits
    callbacks: list[keras.callbacks.Callback]
    augmentation: keras.Sequential | None = None


def build_augmentation(loaded: LoadedConfig) -> keras.Sequential | None:
    """`dataset.augmentation` as one Keras model applied to training batches (None when there is none)."""
    specs = loaded.config.dataset.augmentation
    if not specs:
        return None
    layers = [registry.build("layer", spec, loaded, ("dataset", "augmentation", i)) for i, spec in enumerate(specs)]
    return keras.Sequential(layers, name="augmentation")


def _check_augmentation(augmentation: keras.Sequential, loaded: LoadedConfig, splits: data.Splits) -> None:
    """Augmentation must take the dataset's examples and keep their shape (the saved model never sees it)."""
    path = ("dataset", "augmentation")
    if isinstance(splits.train, data.Split) and isinstance(splits.train.x, dict):
        raise loaded.error(ModelBuildError, path, f"augmentation needs one feature array; dataset "
                           f"'{splits.info.name}' gives named features", hint="remove dataset.augmentation")
    few = data.examples(splits.train, [0, len(splits.train) - 1])
    try:
        out = augmentation(data.tensors(few.x), training=True)
    except Exception as error:  # shape and dtype errors arrive as several TF/Keras types
        raise loaded.error(ModelBuildError, path, f"augmentation cannot take examples of shape "
                           f"{tuple(np.shape(few.x)[1:])}: {first_line(error)}",
                           hint="augmentation layers take the dataset's examples (images for RandomFlip and friends)"
                           ) from None
    if tuple(out.shape) != tuple(np.shape(few.x)):
        raise loaded.error(ModelBuildError, path, f"augmentation changes the example shape from "
                           f"{tuple(np.shape(few.x)[1:])} to {tuple(out.shape[1:])}",
                           hint="prediction would see other shapes: put shape-changing layers (RandomCrop) in "
                                "model.layers instead")


def _prepare(loaded: LoadedConfig) -> Prepared:
    """Seed, load the data, build and compile the model, and check the loss on two examples."""
    config = loaded.config
    tracking.check_installed(loaded)
    with loaded.located():
        shape = data.describe(config.dataset).input_shape
    threads.apply(loaded, shape, TrainingError)  # before TF runs anything
    keras.backend.clear_session()  # fresh layer names and graph state, then the seed
    keras.utils.set_random_seed(config.seed)
    with loaded.located():
        splits = data.load(config.dataset, config.seed)
        if config.training.cache is True:
            data.check_memory_cache(splits.train, [splits.val, splits.test])
    with dtype_policy(config.training.mixed_precision):  # layers take the policy when they are built
        model = build_model(loaded, splits.info.input_shape, splits.preprocessing,
                            data.in_memory(splits.train) if splits.preprocessing else None)
    check_inputs(model, loaded, splits)
    compile_model(model, loaded)
    _dry_run(model, loaded, splits)
    augmentation = build_augmentation(loaded)
    if augmentation is not None:
        _check_augmentation(augmentation, loaded, splits)
    return Prepared(model, splits, build_callbacks(loaded), augmentation)


def train(loaded: LoadedConfig, output_dir: Path = Path("outputs"), *, progress: bool = True,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Train the configured model; write config, history, checkpoints, model and metrics to a new run folder.

    `callbacks` are extra Keras callbacks, appended to fit's list (a sweep's pruning reporter)."""
    prepared = _prepare(loaded)
    run_dir = runs.create_run(output_dir, loaded.config.name)
    runs.atomic_write_yaml(run_dir / runs.CONFIG_FILE, loaded.resolved())
    runs.atomic_write_json(run_dir / runs.DATASET_FILE, prepared.splits.info.to_json())
    if loaded.config.custom_objects:
        runs.atomic_write_text(run_dir / runs.PYTHONPATH_FILE,
                               "".join(f + "\n" for f in registry.custom_folders(loaded)))
    report.write_start(run_dir, loaded, prepared.model)
    return _fit(loaded, prepared, run_dir, None, progress=progress, callbacks=callbacks)


def resume(run_dir: Path, loaded: LoadedConfig | None = None, *, force: bool = False,
           progress: bool = True, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Continue an interrupted run from its last checkpoint, with its own config or (`loaded`) a given one.

    A config that differs from the one the run started with is refused unless `force`.
    """
    config_file = runs.run_file(run_dir, runs.CONFIG_FILE)
    info = runs.run_info(run_dir)
    status = runs.read_status(run_dir) or {}
    if info is not None and info.state == "running":
        raise RunError(f"'{run_dir}' is still being trained (process {status.get('pid')})",
                       hint="stop that process first (Ctrl-C), then resume")
    last = checkpoint.load(run_dir)
    notes = list(last.notes) if last else []
    started_with = last.config if last else yaml.safe_load(config_file.read_text())
    if loaded is None:
        loaded = load_config(config_file)
    elif ("seed",) not in loaded.source.positions and isinstance(started_with.get("seed"), int):
        loaded.config.seed = started_with["seed"]  # a config without a seed continues with the run's seed
    changes = runs.changed_keys(started_with, loaded.resolved())
    if changes:
        listed = ", ".join(f"{key} ({old} -> {new})" for key, old, new in changes)
        if not force:
            raise RunError(f"the config changed since '{run_dir}' started: {listed}",
                           hint="pass --force to resume with the changed config, or start a new run")
        notes.append(f"resumed with a changed config: {listed}")
    done = last.epoch if last else 0
    if last is None and int(status.get("epoch") or 0) > 0:
        raise RunError(f"'{run_dir}' finished {status['epoch']} epochs but has no checkpoint",
                       hint=f"it cannot continue; start a new run with: dltrain train {config_file}")
    epochs = loaded.config.training.epochs
    if info is not None and info.state == "finished" and done >= epochs:
        raise RunError(f"'{run_dir}' already finished all {epochs} epochs",
                       hint=f"to train longer: dltrain train {config_file} --resume {run_dir} "
                            f"--set training.epochs={epochs + 5} --force")
    prepared = _prepare(loaded)
    if last is not None:
        checkpoint.restore(prepared.model, last)
    if changes:
        runs.atomic_write_yaml(config_file, loaded.resolved())
    report.write_resume(run_dir, loaded, bool(changes))
    result = _fit(loaded, prepared, run_dir, last, progress=progress, callbacks=callbacks)
    result.resumed_from = done
    result.notes = notes + result.notes
    return result


def _train_dataset(loaded: LoadedConfig, prepared: Prepared, randomness: EpochRandomness) -> Any:
    """The training batches: in an order drawn from (seed, epoch) when shuffled, so a resumed run replays
    it; streamed files are decoded in parallel; augmentation is applied to these batches only."""
    training = loaded.config.training
    split, batch_size = prepared.splits.train, training.batch_size
    cache = _cache(training.cache, "train", split, batch_size)
    if not training.shuffle:
        ds = data.to_dataset(split, batch_size, cache=cache)
    elif isinstance(split, data.FileSplit) and cache is not True:
        ds = randomness.files(split, batch_size, cache=cache or None, buffer=training.shuffle_buffer)
    else:  # in memory: arrays, or streamed files decoded once into memory (cache: true)
        ds = randomness.dataset(data.in_memory(split), batch_size, training.shuffle_buffer)
    augmentation = prepared.augmentation
    if augmentation is not None:
        @tf.autograph.experimental.do_not_convert
        def augment(x: Any, y: Any) -> tuple[Any, Any]:
            return augmentation(x, training=True), y

        # One call at a time: the layers' seed generators then draw in batch order, as on resume.
        ds = ds.map(augment).prefetch(tf.data.AUTOTUNE)
    return for_model(prepared.model, ds)


def _fit(loaded: LoadedConfig, prepared: Prepared, run_dir: Path, start: Checkpoint | None, *,
         progress: bool, callbacks: Sequence[keras.callbacks.Callback] = ()) -> TrainResult:
    """Fit from `start` (or from scratch), recording every epoch; then evaluate and save."""
    config = loaded.config
    model, splits, user_callbacks = prepared.model, prepared.splits, prepared.callbacks
    epochs, batch_size = config.training.epochs, config.training.batch_size
    randomness = EpochRandomness(config.seed, prepared.augmentation.variables if prepared.augmentation else None)

    def pipeline(name: str, split: data.AnySplit) -> Any:
        return for_model(model, data.to_dataset(
            split, batch_size, cache=_cache(config.training.cache, name, split, batch_size)))

    train_ds = _train_dataset(loaded, prepared, randomness)
    val_ds = pipeline("val", splits.val) if splits.val is not None else None
    test_ds = pipeline("test", splits.test)

    history = start.history if start else []
    recorder = EpochRecorder(run_dir, loaded.resolved(), epochs, history)
    checkpoint.write_history(run_dir / runs.HISTORY_FILE, history)  # drop rows of epochs not checkpointed
    guard = Guard()
    try:
        extras = report.RunExtras(loaded, run_dir, history, user_callbacks, splits.val is not None)
    except DltrainError:
        if start is None:  # nothing trained yet (MLflow unreachable): leave no half-made run behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    # The guard goes first: no later callback sees a batch after a signal or a non-finite loss. The
    # recorder goes after the user's callbacks, so a checkpoint holds what they changed (a reduced LR).
    # TensorBoard, best.keras and MLflow come after the checkpoint: it is the file that must not be missed.
    extra = list(callbacks)
    callbacks = [guard, randomness, *user_callbacks, recorder, *extras.callbacks(), *extra]
    bar = None
    if progress:
        bar = RichProgress(epochs, math.ceil(len(splits.train) / batch_size))
        callbacks.append(bar)
    initial_epoch = start.epoch if start else 0
    runs.write_status(run_dir, "running", epoch=initial_epoch, epochs=epochs)
    with guard.handling_signals():
        try:
            model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                      callbacks=callbacks, shuffle=False, verbose=0)  # the tf.data pipeline shuffles
        except StopRequested as stop:
            _close(bar)
            extras.end("KILLED")
            raise _interrupted(model, run_dir, recorder, stop) from None
        except (NonFiniteLoss, NonFiniteWeights) as error:
            _close(bar)
            extras.end("FAILED")
            raise _diverged(model, run_dir, recorder, error) from None
        except Exception as error:
            _close(bar)
            extras.end("FAILED")
            # A damaged file among streamed examples: TensorFlow's decoder does not say which one.
            unreadable = data.damaged(splits.train, splits.val, splits.test) if data.is_data_error(error) else None
            # Nothing was trained in a new run: leave no half-made run behind.
            if start is None and int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0:
                shutil.rmtree(run_dir, ignore_errors=True)
                if unreadable is not None:
                    raise unreadable from None
                raise TrainingError(f"training failed at the first step: {first_line(error)}",
                                    where=loaded.locate(("model",)), key="model") from None
            runs.write_status(run_dir, "failed", epoch=len(recorder.rows), epochs=epochs,
                              message=first_line(unreadable or error))
            if unreadable is not None:
                raise unreadable from None
            raise
        # A signal from here on lets the run finish (evaluating and saving take seconds); a second one
        # ends the process at once, and every file is still whole.
        test = {k: float(v) for k, v in model.evaluate(test_ds, return_dict=True, verbose=0).items()}
        runs.save_model(model, run_dir / runs.MODEL_FILE)
        # The train and val rows come from the epoch whose weights were tested: the last one, or the one
        # EarlyStopping(restore_best_weights=True) went back to.
        weights_epoch = _restored_epoch(user_callbacks) or len(recorder.rows)
        row = next((r for r in recorder.rows if int(r.get("epoch", 0)) == weights_epoch),
                   recorder.rows[-1] if recorder.rows else None)
        train_metrics, val_metrics = _split_logs(row) if row else ({}, {})
        train_metrics.pop("epoch", None)
        train_metrics.pop("seconds", None)
        metrics = {"train": train_metrics, "val": val_metrics, "test": test}
        runs.atomic_write_json(run_dir / runs.METRICS_FILE,
                               {**metrics, "epochs": len(recorder.rows), "weights_epoch": weights_epoch,
                                "epoch_seconds": recorder.epoch_seconds})
        notes = extras.finish(model, splits, test, len(recorder.rows), batch_size, recorder.rows)
        runs.write_status(run_dir, "finished", epoch=len(recorder.rows), epochs=epochs)
    return TrainResult(run_dir, metrics, len(recorder.rows), recorder.epoch_seconds, notes=splits.info.notes + notes,
                       weights_epoch=weights_epoch, tensorboard_dir=extras.tensorboard_dir)


def _restored_epoch(user_callbacks: list) -> int | None:
    """The epoch (1-based) whose weights an EarlyStopping with restore_best_weights put back, if any."""
    for callback in user_callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.restore_best_weights \
                and callback.best_weights is not None:
            return int(callback.best_epoch) + 1
    return None


def _close(bar: RichProgress | None) -> None:
    if bar is not None:
        bar.on_train_end()  # Keras skips it when fit raises; the live display must stop


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
    last = checkpoint.load(run_dir)
    if last is None:
        kept = "no epoch finished, so no model was saved"
    else:
        checkpoint.restore(model, last)
        runs.save_model(model, run_dir / runs.MODEL_FILE)
        kept = f"model.keras and {checkpoint.CHECKPOINT_FILE} hold the last finite weights (after epoch {last.epoch})"
    runs.write_status(run_dir, "diverged", epoch=len(recorder.rows), epochs=recorder.epochs, message=message)
    return RunDiverged(f"{message}; {kept}", hint="lower optimizer's learning_rate, or clip gradients "
                                                   "(clipnorm) in the optimizer's arguments")


def load_model(path: Path, loaded: LoadedConfig | None = None) -> keras.Model:
    """Load a saved `.keras` model; safe_mode stays on unless the model's own config turned it off."""
    custom = registry.custom_objects(loaded) if loaded is not None else {}
    safe = loaded.config.safe_mode if loaded is not None else True
    try:
        return keras.saving.load_model(path, custom_objects=custom, safe_mode=safe)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise DltrainError(f"cannot load model {path}: {first_line(error)}",
                           hint="is it a .keras file written by dltrain or Keras 3?") from None


def load_run_model(run_dir: Path) -> keras.Model:
    """The final model of a run folder, with the custom objects its config lists."""
    loaded = load_config(runs.run_file(run_dir, runs.CONFIG_FILE))
    return load_model(runs.run_file(run_dir, runs.MODEL_FILE), loaded)


def evaluate(run_dir: Path | None = None, *, model_path: Path | None = None,
             config_path: Path | None = None) -> dict[str, float]:
    """Score a saved model on the test split of its config's dataset."""
    if run_dir is not None:
        config_path = runs.run_file(run_dir, runs.CONFIG_FILE)
        model_path = runs.run_file(run_dir, runs.MODEL_FILE)
    if model_path is None or config_path is None:
        raise DltrainError("give a run folder, or both --model and --config")
    loaded = load_config(config_path)
    with loaded.located():
        shape = data.describe(loaded.config.dataset).input_shape
        splits = data.load(loaded.config.dataset, loaded.config.seed)
    threads.apply(loaded, shape, TrainingError)
    model = load_model(model_path, loaded)
    test_ds = for_model(model, data.to_dataset(splits.test, loaded.config.training.batch_size))
    return {k: float(v) for k, v in model.evaluate(test_ds, return_dict=True, verbose=0).items()}
