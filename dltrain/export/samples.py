"""The examples an export is checked on (a seeded sample of the run's test split), the training examples that
calibrate int8 quantization, and the arrays each model input takes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dltrain.predict import input_arrays


@dataclass
class Samples:
    """Examples of one split: one array per model input (the model's input order), and their labels."""

    arrays: list[np.ndarray]
    y: np.ndarray
    split: str

    def __len__(self) -> int:
        return len(self.y)

    def rows(self, start: int, stop: int) -> list[np.ndarray]:
        """Examples start..stop of every input."""
        return [array[start:stop] for array in self.arrays]


def _pick(split: Any, count: int, rng: np.random.Generator, name: str, model: Any) -> Samples:
    from dltrain import data

    index = np.sort(rng.choice(len(split), size=min(count, len(split)), replace=False))
    part = data.examples(split, index)
    return Samples(input_arrays(model, part.x), np.asarray(part.y), name)


def load_samples(loaded: Any, model: Any, *, test: int, calibration: int) -> tuple[Samples, Samples | None]:
    """`test` examples of the run's test split and `calibration` of its training split, drawn from its seed."""
    from dltrain import data

    with loaded.located():
        splits = data.load(loaded.config.dataset, loaded.config.seed)
        if loaded.config.model.task is not None:
            splits = data.raw_splits(splits)
    rng = np.random.default_rng(loaded.config.seed)
    checked = _pick(splits.test, test, rng, "test", model)
    return checked, _pick(splits.train, calibration, rng, "train", model) if calibration else None
