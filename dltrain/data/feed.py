"""Every dataset `fit` and `evaluate` see: the training batches in their (seed, epoch) order, the caches,
augmentation, and the labels repeated for a model with several outputs. Training asks here and never
touches tf.data itself, so a distribution strategy has one place to wrap."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dltrain import backend  # noqa: F401  (imports TensorFlow quietly first)
import tensorflow as tf

from dltrain.config import TrainingConfig
from dltrain.data.epochs import EpochRandomness
from dltrain.data.pipeline import cache_file, in_memory, own_threads, to_dataset
from dltrain.data.types import AnySplit, ArrowSplit, FileSplit, RecordSplit, Splits
from dltrain.data.workers import WorkerPart, worker_part


# The test split is scored once, in inference mode, where the batch size changes no figure (the metrics and
# the loss are means over examples) but each batch costs a Python round trip: small examples go in batches
# of up to this many bytes. 10,000 Fashion-MNIST images at 1,024 a batch: 0.3 s, against 1.1 s at 32.
SCORING_BATCH_BYTES = 4 << 20
MAX_SCORING_BATCH = 1024


def scoring_batch_size(split: AnySplit, batch_size: int) -> int:
    """The batch the test split is scored in: the training batch, or up to MAX_SCORING_BATCH small examples."""
    x = getattr(split, "x", None)
    arrays = list(x.values()) if isinstance(x, dict) else [x]
    if not all(isinstance(a, np.ndarray) and a.dtype.kind in "biuf" for a in arrays):
        return batch_size  # streamed files and texts: their size in memory is not known here
    per_example = sum(a.dtype.itemsize * math.prod(a.shape[1:]) for a in arrays)
    return max(batch_size, min(MAX_SCORING_BATCH, SCORING_BATCH_BYTES // max(1, per_example)))


@dataclass
class FitData:
    """The datasets of one `fit`, and the callback that sets each epoch's order and seeds before it starts."""

    train: Any
    validation: Any | None
    test: Any
    randomness: EpochRandomness
    # The training batches are this worker's own files (multi-worker, AutoShardPolicy.FILE); False: by data.
    by_file: bool = False
    notes: tuple[str, ...] = ()


def targets(output_names: list[str], y: Any) -> Any:
    """The labels as the model's outputs take them: the same array for every output of a multi-output model."""
    return {name: y for name in output_names} if len(output_names) > 1 else y


def _for_outputs(dataset: Any, output_names: list[str]) -> Any:
    """Give every output of a multi-output model the dataset's labels (auxiliary heads, deep supervision)."""
    if len(output_names) < 2:
        return dataset

    @tf.autograph.experimental.do_not_convert
    def repeat_labels(x: Any, y: Any) -> tuple[Any, Any]:
        return x, targets(output_names, y)

    return dataset.map(repeat_labels)


def _cache(cache: bool | str, name: str, split: AnySplit, batch_size: int) -> bool | str:
    """`training.cache` for one split: True/False as given; a path prefix becomes that split's own file."""
    if isinstance(cache, bool):
        return cache
    Path(cache).parent.mkdir(parents=True, exist_ok=True)
    return cache_file(cache, name, split, batch_size)


def augment_batch(augmentation: Any, x: Any) -> Any:
    """A training batch through the augmentation layers. Images without a channel axis ([batch, height,
    width], as MNIST-style files give them) get one for the layers and lose it after: Keras's image layers
    read a rank-3 tensor as one image whose channels are its columns, and would flip or shift the whole batch
    at once along the wrong axis."""
    if len(x.shape) == 3:
        return augmentation(tf.expand_dims(x, -1), training=True)[..., 0]
    return augmentation(x, training=True)


def augment_masks(augmentation: Any, x: Any, masks: Any) -> tuple[Any, Any]:
    """A segmentation batch through the augmentation layers: Keras's image layers move each image and its
    mask alike (`segmentation_masks`; masks are resampled with nearest neighbour), and the masks keep their
    dtype (some layers give them back as floats)."""
    out = augmentation({"images": x, "segmentation_masks": masks}, training=True)
    return out["images"], tf.cast(tf.round(out["segmentation_masks"]), masks.dtype)


def _train(split: AnySplit, training: TrainingConfig, randomness: EpochRandomness, augmentation: Any,
           masks: bool = False) -> Any:
    """The training batches: in an order drawn from (seed, epoch) when shuffled, so a resumed run replays
    it; streamed files are decoded in parallel; augmentation is applied to these batches only."""
    batch_size = training.batch_size
    cache = _cache(training.cache, "train", split, batch_size)
    if not training.shuffle:
        ds = to_dataset(split, batch_size, cache=cache)
    elif isinstance(split, FileSplit) and cache is not True:
        ds = own_threads(randomness.files(split, batch_size, cache=cache or None, buffer=training.shuffle_buffer))
    elif isinstance(split, RecordSplit) and cache is not True:
        ds = own_threads(randomness.records(split, batch_size, cache=cache or None, buffer=training.shuffle_buffer))
    elif isinstance(split, ArrowSplit) and cache is not True:
        ds = own_threads(randomness.arrow(split, batch_size, cache=cache or None, buffer=training.shuffle_buffer))
    else:  # in memory: arrays, or streamed files decoded once into memory (cache: true)
        ds = randomness.dataset(in_memory(split), batch_size, training.shuffle_buffer)
    if augmentation is not None:
        @tf.autograph.experimental.do_not_convert
        def augment(x: Any, y: Any) -> tuple[Any, Any]:
            return augment_masks(augmentation, x, y) if masks else (augment_batch(augmentation, x), y)

        # One call at a time: the layers' seed generators then draw in batch order, as on resume.
        ds = ds.map(augment).prefetch(tf.data.AUTOTUNE)
    return ds


def _texts_alone(dataset: Any, labelled: bool) -> Any:
    """Unlabelled texts (a causal LM's) without the placeholder labels their split carries."""
    if labelled:
        return dataset

    @tf.autograph.experimental.do_not_convert
    def text(x: Any, y: Any) -> Any:
        return x

    return dataset.map(text)


def fit_datasets(splits: Splits, training: TrainingConfig, seed: int, output_names: list[str],
                 augmentation: Any = None, worker: tuple[int, int] | None = None) -> FitData:
    """The train, validation and test datasets of a run, with the per-epoch randomness that orders them;
    `worker` (rank, workers) of a multi-worker job: the training files this worker reads."""
    randomness = EpochRandomness(seed, augmentation.variables if augmentation is not None else None)
    batch_size = training.batch_size
    part = worker_part(splits.train, *worker) if worker is not None else WorkerPart(splits.train, False)
    labelled = splits.info.labelled

    def fixed(name: str, split: AnySplit, size: int) -> Any:
        return _texts_alone(_for_outputs(to_dataset(split, size, cache=_cache(training.cache, name, split, size)),
                                         output_names), labelled)

    return FitData(
        train=_texts_alone(_for_outputs(_train(part.split, training, randomness, augmentation, splits.info.masks),
                                        output_names), labelled),
        validation=fixed("val", splits.val, batch_size) if splits.val is not None else None,
        test=fixed("test", splits.test, scoring_batch_size(splits.test, batch_size)),
        randomness=randomness,
        by_file=part.by_file,
        notes=(part.note,) if part.note else (),
    )


def evaluation_dataset(split: AnySplit, batch_size: int, output_names: list[str], labelled: bool = True) -> Any:
    """The test split as `evaluate` takes it, outside a run's training (no cache), in the batches the run
    scored it in, so `dltrain evaluate` repeats metrics.json's figures."""
    return _texts_alone(_for_outputs(to_dataset(split, scoring_batch_size(split, batch_size)), output_names), labelled)
