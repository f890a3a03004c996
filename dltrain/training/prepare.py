"""Before any run folder exists: seed, load the data, build and compile the model, and try the loss on
two examples, so every mistake that can be found without training is found here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import keras
import numpy as np

from dltrain import data
from dltrain.config import LoadedConfig
from dltrain.data import augment_batch, augment_masks, targets
from dltrain.distribute import Distribution, plan as plan_distribution, start as start_distribution
from dltrain.errors import ModelBuildError, first_line
from dltrain.model import build_augmentation, build_model, compile_model, dtype_policy
from dltrain.runs import check_tracking_installed
import dltrain.training.phases as phases
import dltrain.training.threads as threads
from dltrain.training.class_weight import class_weights, described
from dltrain.training.fused import fuse_batch_norm
from dltrain.training.result import TrainingError
from dltrain.trust import require_trust


@dataclass
class Prepared:
    """A compiled model with its data, callbacks and training-batch augmentation, ready to fit."""

    model: keras.Model
    splits: data.Splits
    callbacks: list[keras.callbacks.Callback]
    augmentation: keras.Sequential | None
    # The tf.distribute strategy the model was built in, and this process's part in it.
    distribution: Distribution
    # Keras's fit(class_weight=): every class index's weight (training.class_weight), or None.
    class_weight: dict[int, float] | None = None

    def compile(self, loaded: LoadedConfig, optimizer: Any, optimizer_path: tuple) -> None:
        """Compile the model again (a phase's trainable flags, a new optimizer), in the strategy's scope."""
        with self.distribution.scope():
            compile_model(self.model, loaded, optimizer, optimizer_path)
        self.distribution.compiled(self.model)


def prepare(loaded: LoadedConfig) -> Prepared:
    """Seed, load the data, build and compile the model, and check the loss on two examples."""
    config = loaded.config
    require_trust(loaded)  # before the data is read: the model could not be built anyway
    check_tracking_installed(loaded)
    planned = plan_distribution(loaded)  # a malformed TF_CONFIG is reported before any server starts
    with loaded.located():
        shape = data.describe(config.dataset).input_shape
    threads.apply(loaded, shape, TrainingError)  # before TF runs anything
    distribution = start_distribution(loaded, planned)  # before TF runs anything too: it may split the CPU
    keras.backend.clear_session()  # fresh layer names and graph state, then the seed
    keras.utils.set_random_seed(config.seed)
    with loaded.located():
        splits = data.load(config.dataset, config.seed)
        if splits.info.test_split is not None:  # the default a source without a test split got: the run says so
            config.dataset.test_split = splits.info.test_split
        if config.training.cache is True:
            data.check_memory_cache(splits.train, [splits.val, splits.test])
        task = config.model.task is not None
        if task:  # raw strings and images: the task's own preprocessor runs inside fit
            splits = data.raw_splits(splits)
    # The model, its optimizer and metrics are created in the strategy's scope: their variables are mirrored.
    with distribution.scope(), dtype_policy(config.training.mixed_precision):  # layers take the policy when built
        model = build_model(loaded, splits.info.input_shape, splits.preprocessing,
                            data.in_memory(splits.train) if splits.preprocessing else None,
                            num_classes=splits.info.num_classes)
    if config.training.fused_batch_norm and not task:  # training only: check, evaluate and predict keep Keras's layer
        fuse_batch_norm(model)
    if not task:  # a task takes what its preprocessor takes; its inputs are token ids, not the dataset's
        check_inputs(model, loaded, splits)
    first = phases.plan(loaded)[0]
    phases.set_trainable(model, loaded, first)  # phase 1's own flags and optimizer, if it has them
    with distribution.scope():
        compile_model(model, loaded, first.optimizer, first.optimizer_path)
    distribution.compiled(model)
    phases.check(model, loaded)  # every phase's globs, optimizer and callbacks, before any folder exists
    if not task:  # a task's preprocessor runs in fit's data pipeline, so a call on raw examples means nothing
        _dry_run(model, loaded, splits)
    augmentation = build_augmentation(loaded)
    if augmentation is not None:
        _check_augmentation(augmentation, loaded, splits)
    info = splits.info
    weights = class_weights(loaded, splits.train.y, info.num_classes, info.class_names, list(model.output_names),
                            multi_label=info.multi_label)
    if weights is not None:
        info.class_weight = described(weights, info.class_names)
    return Prepared(model, splits, phases.build_callbacks(loaded, first), augmentation, distribution, weights)


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


def _dry_run(model: keras.Model, loaded: LoadedConfig, splits: data.Splits) -> None:
    """Compute the loss on the examples with the smallest and largest labels, so a model that cannot fit
    the labels fails before any run folder exists."""
    labels = splits.train.y.reshape(len(splits.train.y), -1)[:, 0]
    pick = [int(labels.argmin()), int(labels.argmax())]
    few = data.examples(splits.train, pick)
    x, y = data.tensors(few.x), few.y
    try:
        model.compute_loss(x=x, y=targets(list(model.output_names), y), y_pred=model(x, training=False))
    except Exception as error:  # shape and dtype errors arrive as several TF/Keras types
        classes = splits.info.num_classes
        hint = f"the dataset has {classes} classes; check the last layer's units and the loss" if classes else None
        raise loaded.error(ModelBuildError, ("loss",),
                           f"the loss cannot compare the model's output {_shapes(model.outputs)} with the "
                           f"labels {tuple(splits.train.y.shape[1:]) or '(integers)'}: {first_line(error)}",
                           hint=hint) from None


def _shapes(tensors: list[Any]) -> str:
    return ", ".join(str(tuple(t.shape)) for t in tensors)


def _check_augmentation(augmentation: keras.Sequential, loaded: LoadedConfig, splits: data.Splits) -> None:
    """Augmentation must take the dataset's examples and keep their shape (the saved model never sees it)."""
    path = ("dataset", "augmentation")
    if isinstance(splits.train, data.Split) and isinstance(splits.train.x, dict):
        raise loaded.error(ModelBuildError, path, f"augmentation needs one feature array; dataset "
                           f"'{splits.info.name}' gives named features", hint="remove dataset.augmentation")
    few = data.examples(splits.train, [0, len(splits.train) - 1])
    try:
        if splits.info.masks:  # image and mask together
            out, _ = augment_masks(augmentation, data.tensors(few.x), data.tensors(few.y))
        else:
            out = augment_batch(augmentation, data.tensors(few.x))
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
