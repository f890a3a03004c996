"""A segmentation run's test report: each class's IoU over the test pixels (metrics.json) and the masks drawn
over test images. It stands in for the confusion matrix and the misclassified grid of a classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dltrain import data, runs
from dltrain.predict import class_indices

_DRAWN = 6  # test images drawn with their masks


def confusion(true: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Pixel counts: rows the true class, columns the predicted one."""
    true = true.reshape(-1).astype(np.int64)
    predicted = predicted.reshape(-1).astype(np.int64)
    return np.bincount(true * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def iou_from(matrix: np.ndarray) -> np.ndarray:
    """Each class's IoU (true positives over the union of truth and prediction); NaN where the union is empty."""
    hits = np.diag(matrix).astype(np.float64)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - hits
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, hits / np.maximum(union, 1), np.nan)


def per_class_iou(split: data.AnySplit, outputs: Any, class_names: list[str]) -> dict[str, float | None]:
    """{class: IoU} of the test split's masks against the model's outputs on it (None: a class absent from both)."""
    true = data.decoded_labels(split)
    found = iou_from(confusion(true, class_indices(outputs), len(class_names)))
    return {name: None if np.isnan(v) else round(float(v), 6) for name, v in zip(class_names, found)}


def draw_test_plots(run_dir: Path, splits: data.Splits, outputs: Any) -> list[Path]:
    """The per-class IoU bars and the first test images with their true and predicted masks."""
    names = splits.info.class_names or [str(i) for i in range(splits.info.num_classes or 0)]
    predicted = class_indices(outputs)
    written = [runs.draw_iou(run_dir, per_class_iou(splits.test, outputs, names))]
    few = data.examples(splits.test, np.arange(min(_DRAWN, len(splits.test))))
    scores = [float(np.nanmean(iou_from(confusion(t, p, len(names))))) for t, p in zip(few.y, predicted)]
    written.append(runs.draw_masks(run_dir, few.x, few.y, predicted[: len(few.y)], scores))
    return written
