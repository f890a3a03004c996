"""`synthetic`: seeded, learnable random data for tests and quick experiments."""

from __future__ import annotations

import numpy as np

from dltrain.config import DatasetConfig
from dltrain.data.types import DatasetInfo, Source, Split


def describe(config: DatasetConfig) -> DatasetInfo:
    """The shape and class count the config gives (8 features and 2 classes by default)."""
    shape = tuple(config.input_shape or (8,))
    classes = config.num_classes or 2
    return DatasetInfo("synthetic", shape, classes, [f"class_{i}" for i in range(classes)])


def read(config: DatasetConfig, seed: int) -> Source:
    """Each class is a random prototype plus noise; `train_size` and `test_size` examples."""
    rng = np.random.default_rng(seed)
    info = describe(config)
    prototypes = rng.uniform(0.0, 1.0, size=(info.num_classes, *info.input_shape)).astype("float32")

    def make(count: int) -> Split:
        labels = rng.integers(0, info.num_classes, size=count)
        noise = rng.normal(0.0, 0.25, size=(count, *info.input_shape)).astype("float32")
        return Split(prototypes[labels] + noise, labels.astype("int64"))

    return Source(make(config.train_size or 512), make(config.test_size or 128), info)
