"""PNG plots of a segmentation run's test split: true and predicted masks over the images, per-class IoU."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from dltrain.runs.plots import PLOTS_DIR, pyplot, save_figure

MASKS_FILE = "masks.png"
IOU_FILE = "per_class_iou.png"
# Class 0 is drawn clear (the background, usually); the others in matplotlib's tab10 colours.
_COLOURS = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                     (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]) / 255


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """An RGB picture in [0, 1]: the image, with every pixel of a class other than 0 tinted in its colour."""
    picture = np.asarray(image, dtype=np.float32)
    if picture.ndim == 3 and picture.shape[-1] not in (3, 4):
        picture = picture[..., 0]
    if picture.ndim == 2:
        picture = np.repeat(picture[..., None], 3, axis=-1)
    picture = picture[..., :3]
    low, high = float(picture.min()), float(picture.max())
    picture = (picture - low) / (high - low) if high > low else picture * 0
    classes = np.asarray(mask).reshape(picture.shape[:2]).astype(np.int64)
    tint = _COLOURS[(classes - 1) % len(_COLOURS)]
    return np.where((classes > 0)[..., None], 0.45 * picture + 0.55 * tint, picture)


def draw_masks(run_dir: Path, images: np.ndarray, true: np.ndarray, predicted: np.ndarray,
               scores: list[float]) -> Path:
    """One row per test image: the image, its true mask over it, the predicted mask over it (with its IoU)."""
    plt = pyplot()
    rows = len(images)
    h, w = images.shape[1:3]
    gap = max(1, round(w * 0.1))
    # One picture of every tile, as the misclassified grid draws: one imshow costs far less than an axes each.
    canvas = np.ones((rows * (h + gap), 3 * w + 2 * gap, 3), np.float32)
    for r in range(rows):
        tiles = [overlay(images[r], np.zeros(true[r].shape)), overlay(images[r], true[r]),
                 overlay(images[r], predicted[r])]
        for c, tile in enumerate(tiles):
            top, left = r * (h + gap), c * (w + gap)
            canvas[top:top + h, left:left + w] = tile
    width = 7.5
    height = width * canvas.shape[0] / canvas.shape[1] + 0.6
    figure = plt.figure(figsize=(width, height))
    axes = figure.add_axes((0.02, 0.02, 0.96, 1 - 0.6 / height - 0.02))
    axes.imshow(canvas, interpolation="nearest")
    axes.axis("off")
    for c, title in enumerate(("image", "true mask", "predicted mask")):
        axes.text(c * (w + gap) + w / 2 - 0.5, -1.5, title, ha="center", va="bottom", fontsize=9)
    for r, score in enumerate(scores):
        text = f"IoU {score:.2f}" if math.isfinite(score) else ""
        axes.text(3 * w + 2 * gap - 1, r * (h + gap) + h - 1.5, text, ha="right", va="bottom", fontsize=8,
                  color="white", bbox={"facecolor": "black", "alpha": 0.5, "pad": 1, "linewidth": 0})
    return save_figure(figure, run_dir / PLOTS_DIR / MASKS_FILE)


def draw_iou(run_dir: Path, iou: dict[str, float | None]) -> Path:
    """A bar per class: its IoU on the test split (classes absent from both truth and prediction left empty)."""
    plt = pyplot()
    names = list(iou)
    values = [np.nan if v is None else v for v in iou.values()]
    height = max(2.4, 0.35 * len(names) + 1.3)
    figure, axes = plt.subplots(figsize=(6, height))
    # Margins in inches (the title above, the axis label below), whatever the number of classes.
    figure.subplots_adjust(left=0.22, right=0.95, top=1 - 0.4 / height, bottom=0.6 / height)
    axes.barh(range(len(names)), [0 if math.isnan(v) else v for v in values],
              color=[_COLOURS[(i - 1) % len(_COLOURS)] if i else (0.6, 0.6, 0.6) for i in range(len(names))])
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("IoU (intersection over union)")
    for i, v in enumerate(values):
        axes.text(0.01 if math.isnan(v) else min(v + 0.01, 0.9), i, "absent" if math.isnan(v) else f"{v:.3f}",
                  va="center", fontsize=8)
    present = [v for v in values if not math.isnan(v)]
    axes.set_title(f"test split: per-class IoU, mean {np.mean(present):.4f}" if present else "test split: IoU")
    axes.grid(alpha=0.3, axis="x")
    return save_figure(figure, run_dir / PLOTS_DIR / IOU_FILE)
