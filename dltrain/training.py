"""Compile, fit and evaluate a model from a config, writing the run folder as it goes."""

from __future__ import annotations

import csv
import io
import math
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras

from dltrain import data, registry, runs, threads
from dltrain.config import LoadedConfig, load_config
from dltrain.errors import DltrainError, ModelBuildError, first_line
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


class _HistoryFile(keras.callbacks.Callback):
    """Writes history.csv atomically after every epoch and times the epochs."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.rows: list[dict[str, float]] = []
        self.epoch_seconds: list[float] = []
        self._start = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()},
                          "seconds": round(self.epoch_seconds[-1], 4)})
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.rows[-1]))
        writer.writeheader()
        writer.writerows(self.rows)
        runs.atomic_write_text(self.path, out.getvalue())


def compile_model(model: keras.Model, loaded: LoadedConfig) -> None:
    """Compile with the config's optimizer, loss, metrics and execution settings."""
    config = loaded.config
    model.compile(
        optimizer=registry.build("optimizer", config.optimizer, loaded, ("optimizer",)),
        loss=registry.build("loss", config.loss, loaded, ("loss",)),
        metrics=[registry.build("metric", m, loaded, ("metrics", i)) for i, m in enumerate(config.metrics)],
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


def _cache(cache: bool | str, name: str, split: data.Split, batch_size: int) -> bool | str:
    """`training.cache` for one split: True/False as given; a path prefix becomes that split's own file."""
    if isinstance(cache, bool):
        return cache
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    return data.cache_file(cache, name, split, batch_size)


def build_callbacks(loaded: LoadedConfig) -> list[keras.callbacks.Callback]:
    """The config's `training.callbacks` as Keras callback objects."""
    return [registry.build("callback", spec, loaded, ("training", "callbacks", i))
            for i, spec in enumerate(loaded.config.training.callbacks)]


def _dry_run(model: keras.Model, loaded: LoadedConfig, splits: data.Splits) -> None:
    """Compute the loss on the examples with the smallest and largest labels, so a model that cannot fit
    the labels fails before any run folder exists."""
    labels = splits.train.y.reshape(len(splits.train.y), -1)[:, 0]
    pick = [int(labels.argmin()), int(labels.argmax())]
    x, y = splits.train.x[pick], splits.train.y[pick]
    try:
        model.compute_loss(x=x, y=y, y_pred=model(x, training=False))
    except Exception as error:  # shape and dtype errors arrive as several TF/Keras types
        classes = splits.info.num_classes
        hint = f"the dataset has {classes} classes; check the last layer's units and the loss" if classes else None
        raise loaded.error(ModelBuildError, ("loss",),
                           f"the loss cannot compare the model's output {tuple(model.output.shape)} with the "
                           f"labels {tuple(splits.train.y.shape[1:]) or '(integers)'}: {first_line(error)}",
                           hint=hint) from None


def _split_logs(logs: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    train = {k: float(v) for k, v in logs.items() if not k.startswith("val_")}
    val = {k[4:]: float(v) for k, v in logs.items() if k.startswith("val_")}
    return train, val


def train(loaded: LoadedConfig, output_dir: Path = Path("outputs"), *, progress: bool = True) -> TrainResult:
    """Train the configured model; write config, history, model and metrics to a new run folder."""
    config = loaded.config
    threads.apply(loaded, data.describe(config.dataset).input_shape, TrainingError)  # before TF runs anything
    keras.backend.clear_session()  # fresh layer names and graph state, then the seed
    keras.utils.set_random_seed(config.seed)
    splits = data.load(config.dataset, config.seed)
    with dtype_policy(config.training.mixed_precision):  # layers take the policy when they are built
        model = build_model(loaded, splits.info.input_shape)
    compile_model(model, loaded)
    _dry_run(model, loaded, splits)
    user_callbacks = build_callbacks(loaded)

    batch_size = config.training.batch_size

    def pipeline(name: str, split: data.Split, shuffle: bool = False) -> Any:
        return data.to_dataset(split, batch_size, shuffle=shuffle, buffer=config.training.shuffle_buffer,
                               seed=config.seed, cache=_cache(config.training.cache, name, split, batch_size))

    train_ds = pipeline("train", splits.train, shuffle=config.training.shuffle)
    val_ds = pipeline("val", splits.val) if splits.val else None
    test_ds = pipeline("test", splits.test)

    run_dir = runs.create_run(output_dir, config.name)
    runs.atomic_write_yaml(run_dir / runs.CONFIG_FILE, loaded.resolved())
    runs.atomic_write_json(run_dir / runs.DATASET_FILE, splits.info.to_json())
    history = _HistoryFile(run_dir / runs.HISTORY_FILE)
    callbacks = [*user_callbacks, history]
    if progress:
        callbacks.append(RichProgress(config.training.epochs, math.ceil(len(splits.train) / batch_size)))
    try:
        model.fit(train_ds, validation_data=val_ds, epochs=config.training.epochs, callbacks=callbacks,
                  shuffle=False, verbose=0)  # the tf.data pipeline shuffles
    except Exception as error:
        # Nothing was trained: leave no half-made run behind.
        if int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise TrainingError(f"training failed at the first step: {first_line(error)}",
                                where=loaded.locate(("model",)), key="model") from None
        raise
    test = {k: float(v) for k, v in model.evaluate(test_ds, return_dict=True, verbose=0).items()}
    runs.save_model(model, run_dir / runs.MODEL_FILE)
    train_metrics, val_metrics = _split_logs(history.rows[-1]) if history.rows else ({}, {})
    train_metrics.pop("epoch", None)
    train_metrics.pop("seconds", None)
    metrics = {"train": train_metrics, "val": val_metrics, "test": test}
    runs.atomic_write_json(run_dir / runs.METRICS_FILE,
                           {**metrics, "epochs": len(history.rows), "epoch_seconds": history.epoch_seconds})
    return TrainResult(run_dir, metrics, len(history.rows), history.epoch_seconds)


def load_model(path: Path) -> keras.Model:
    """Load a saved `.keras` model with Keras's safe_mode on (no arbitrary code from the file)."""
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile errors, ...
        raise DltrainError(f"cannot load model {path}: {first_line(error)}",
                           hint="is it a .keras file written by dltrain or Keras 3?") from None


def evaluate(run_dir: Path | None = None, *, model_path: Path | None = None,
             config_path: Path | None = None) -> dict[str, float]:
    """Score a saved model on the test split of its config's dataset."""
    if run_dir is not None:
        config_path = runs.run_file(run_dir, runs.CONFIG_FILE)
        model_path = runs.run_file(run_dir, runs.MODEL_FILE)
    if model_path is None or config_path is None:
        raise DltrainError("give a run folder, or both --model and --config")
    loaded = load_config(config_path)
    threads.apply(loaded, data.describe(loaded.config.dataset).input_shape, TrainingError)
    splits = data.load(loaded.config.dataset, loaded.config.seed)
    model = load_model(model_path)
    test_ds = data.to_dataset(splits.test, loaded.config.training.batch_size)
    return {k: float(v) for k, v in model.evaluate(test_ds, return_dict=True, verbose=0).items()}
