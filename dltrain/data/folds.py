"""Cross-validation folds of the training split: which fold each example belongs to, drawn from the seed.

Classification labels are stratified: each class's examples are dealt round-robin to the folds after a seeded
shuffle, so every fold holds each class's share to within one example, and the folds' sizes differ by at most
one. Other labels (regression, several labels per example) are dealt the same way without classes."""

from __future__ import annotations

import numpy as np

from dltrain.data.types import AnySplit


def stratifiable(y: np.ndarray, num_classes: int | None) -> bool:
    """Whether labels are one class index per example (the folds are then stratified)."""
    return bool(num_classes) and y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


def assign_folds(y: np.ndarray, folds: int, seed: int, *, stratified: bool) -> np.ndarray:
    """The fold (0..folds-1) of each example, a pure function of (labels, folds, seed)."""
    rng = np.random.default_rng([seed, 2])  # [seed] carves validation, [seed, 1] test: a stream of its own
    order = rng.permutation(len(y))
    if stratified:
        # A stable sort by class keeps the shuffled order within each class; dealing the concatenation
        # round-robin then spreads every class evenly and keeps the fold sizes within one of each other.
        order = order[np.argsort(y[order], kind="stable")]
    fold = np.empty(len(y), dtype=np.int64)
    fold[order] = np.arange(len(y)) % folds
    return fold


def split_fold(train: AnySplit, index: int, folds: int, seed: int,
               num_classes: int | None) -> tuple[AnySplit, AnySplit]:
    """(training, validation) for fold `index` (1-based) of `folds`: it validates on its fold, trains on the rest."""
    fold = assign_folds(train.y, folds, seed, stratified=stratifiable(train.y, num_classes))
    held = fold == index - 1
    return train.take(np.flatnonzero(~held)), train.take(np.flatnonzero(held))
