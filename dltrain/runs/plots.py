"""PNG plots of a run: learning curves, a confusion matrix, misclassified examples, and run comparisons.

matplotlib is imported on first use (never by the CLI at start-up) and draws with the Agg backend, so
plots work without a display, in CI and over ssh.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

import dltrain.runs.folders as runs
import dltrain.runs.history as history

PLOTS_DIR = "plots"
CONFUSION_FILE = "confusion_matrix.png"
MISCLASSIFIED_FILE = "misclassified.png"


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed); call it before anything else draws."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def warm_up() -> None:
    """Import pyplot on a thread of its own while the model trains: the import takes about a second, and the
    plots after the last epoch would otherwise wait for it."""
    threading.Thread(target=_import_quietly, name="dltrain-pyplot").start()


def _import_quietly() -> None:
    try:
        pyplot()
    except Exception:  # noqa: BLE001  (the plots at the end import it again and report what fails)
        pass


def save_figure(figure: Any, path: Path) -> Path:
    """Write a figure as PNG atomically (a reader never sees half a file) and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with runs.atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    finally:
        pyplot().close(figure)
    return path


def draw_curves(run_dir: Path, rows: list[dict[str, float]] | None = None) -> list[Path]:
    """One PNG per metric (loss, accuracy, ...): train and validation per epoch, best validation marked."""
    rows = history.read_history(run_dir) if rows is None else rows
    if not rows:
        return []
    plt = pyplot()
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(rows)]
    written = []
    names = history.metric_names(rows)
    for name in sorted(names, key=lambda n: n != "loss"):  # the loss first, then metrics as compiled
        figure, axes = plt.subplots(figsize=(6, 4))
        figure.subplots_adjust(**_MARGINS)
        axes.plot(epochs, [row.get(name, math.nan) for row in rows], marker="o", label=f"train {name}")
        val = f"val_{name}"
        if any(val in row for row in rows):
            axes.plot(epochs, [row.get(val, math.nan) for row in rows], marker="o", label=f"validation {name}")
            best = history.best_epoch(rows, val)
            if best is not None:
                axes.axvline(best[1], color="grey", linestyle=":", label=f"best {val} {best[0]:.4g} (epoch {best[1]})")
        _mark_phases(axes, rows, epochs)
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.set_title(f"{run_dir.name}: {name}")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        axes.legend()
        written.append(save_figure(figure, run_dir / PLOTS_DIR / f"{_file_name(name)}.png"))
    return written


def phase_starts(rows: list[dict[str, float]]) -> list[tuple[int, float]]:
    """(phase, where it starts on the epoch axis: between two epochs) for every phase after the first."""
    starts = []
    for before, row in zip(rows, rows[1:]):
        if "phase" in row and row.get("phase") != before.get("phase"):
            starts.append((int(row["phase"]), (float(before["epoch"]) + float(row["epoch"])) / 2))
    return starts


def _mark_phases(axes: Any, rows: list[dict[str, float]], epochs: list[int]) -> None:
    """A dashed line where each phase of training.phases starts, named at the top of the plot."""
    for phase, x in phase_starts(rows):
        axes.axvline(x, color="tab:red", linestyle="--", linewidth=1)
        axes.annotate(f"phase {phase}", (x, 1), xycoords=("data", "axes fraction"), xytext=(3, -12),
                      textcoords="offset points", color="tab:red", fontsize=8)


# Fixed margins instead of matplotlib's constrained layout, which measures every text several times:
# it doubled the drawing time (4.5 -> 2.2 s for the misclassified grid, 0.9 -> 0.5 s for a curve).
_MARGINS = {"left": 0.13, "right": 0.97, "top": 0.91, "bottom": 0.13}
_CHAR_INCHES = 0.075  # the width of one tick-label character at matplotlib's default 10 pt


def _file_name(metric: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in metric)


def draw_confusion(path: Path, y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]) -> Path:
    """A confusion matrix (rows: true class, columns: predicted), with counts and the accuracy."""
    plt = pyplot()
    classes = len(class_names)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (y_true.astype(int), y_pred.astype(int)), 1)
    size = max(4.0, 0.55 * classes + 2)
    # Room for the longest class name: beside the rows, and below the columns (written at 45 degrees).
    label = _CHAR_INCHES * max(len(name) for name in class_names) + 0.55
    width, height = size + 1 + label, size + label * 0.75
    figure, axes = plt.subplots(figsize=(width, height))
    figure.subplots_adjust(left=label / width, right=1 - 0.55 / width, top=1 - 0.45 / height,
                           bottom=label * 0.75 / height)  # the right: the colour bar's numbers
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(range(classes), class_names, rotation=45, ha="right")
    axes.set_yticks(range(classes), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    axes.set_title(f"test split: {matrix.sum()} examples, accuracy {accuracy:.4f}")
    if classes <= 20:
        threshold = (int(matrix.min()) + int(matrix.max())) / 2  # the middle of the colour scale
        for i in range(classes):
            for j in range(classes):
                axes.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if matrix[i, j] > threshold else "black")
    return save_figure(figure, path)


def is_image(shape: tuple[int, ...]) -> bool:
    """Whether examples of this shape can be shown as pictures: (H, W), (H, W, 1) or (H, W, 3)."""
    return (len(shape) == 2 and min(shape) >= 4) or (len(shape) == 3 and shape[-1] in (1, 3) and min(shape[:2]) >= 4)


def draw_misclassified(path: Path, x: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray,
                       class_names: list[str], limit: int = 16) -> Path | None:
    """A grid of the test images the model got most confidently wrong, with true and predicted class."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    if not len(wrong):
        return None
    confidence = probabilities[wrong, predicted[wrong]]
    picked = wrong[np.argsort(-confidence)][:limit]
    plt = pyplot()
    columns = min(4, len(picked))
    # One picture of all the tiles, labelled with text, instead of a subplot per image: matplotlib's axes
    # cost about 50 ms each to make and draw (0.9 s for the 16 of this grid, 0.4 s as one).
    canvas, labels = _mosaic([_tile(x[i]) for i in picked], columns)
    width = 2.4 * columns
    pictures = 0.96 * width * canvas.shape[0] / canvas.shape[1]  # inches, at the canvas's own aspect
    height = pictures + 0.75
    figure = plt.figure(figsize=(width, height))
    axes = figure.add_axes((0.02, 0.1 / height, 0.96, pictures / height))
    axes.imshow(canvas, interpolation="nearest")
    axes.axis("off")
    for (centre, top), i in zip(labels, picked):
        axes.text(centre, top, f"true: {class_names[int(y_true[i])]}\npred: "
                  f"{class_names[int(predicted[i])]} ({probabilities[i, predicted[i]]:.2f})",
                  ha="center", va="bottom", fontsize=8)
    figure.suptitle(f"most confident mistakes ({len(wrong)} of {len(y_true)} test examples wrong)", fontsize=10)
    return save_figure(figure, path)


def _tile(example: Any) -> np.ndarray:
    """One example as an RGB picture in [0, 1], scaled on its own as imshow scales each picture."""
    image = np.asarray(example, dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = float(image.min()), float(image.max())
    image = (image - low) / (high - low) if high > low else image * 0
    return np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image


def _mosaic(tiles: list[np.ndarray], columns: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The tiles on a white canvas, a column gap between them and room for two lines of text above each;
    returns the canvas and, for each tile, where its label's bottom centre goes (in imshow's coordinates)."""
    h, w = tiles[0].shape[:2]
    gap, band = max(1, round(w * 0.15)), max(2, round(h * 0.45))
    lines = math.ceil(len(tiles) / columns)
    canvas = np.ones((lines * (h + band), columns * w + (columns - 1) * gap, 3), np.float32)
    labels = []
    for k, tile in enumerate(tiles):
        top, left = (k // columns) * (h + band) + band, (k % columns) * (w + gap)
        canvas[top:top + h, left:left + w] = tile
        labels.append((left - 0.5 + w / 2, top - 1.5))  # pixel centres are whole numbers: edges at -0.5
    return canvas, labels


def draw_test_plots(run_dir: Path, x: np.ndarray, y: np.ndarray, probabilities: np.ndarray,
                    class_names: list[str]) -> list[Path]:
    """The confusion matrix and (for image data) the misclassified examples of the test split."""
    written = [draw_confusion(run_dir / PLOTS_DIR / CONFUSION_FILE, y, probabilities.argmax(axis=1), class_names)]
    if is_image(tuple(x.shape[1:])):
        grid = draw_misclassified(run_dir / PLOTS_DIR / MISCLASSIFIED_FILE, x, y, probabilities, class_names)
        if grid is not None:
            written.append(grid)
    return written


def draw_comparison(curves: list[tuple[str, list[dict[str, float]]]], path: Path) -> Path:
    """One PNG with the runs' validation curves overlaid, one panel per metric."""
    plt = pyplot()
    names = list(dict.fromkeys(m for _, rows in curves for m in history.metric_names(rows)))
    names.sort(key=lambda n: n != "loss")
    panels = [m for m in names if any(f"val_{m}" in row for _, rows in curves for row in rows)]
    prefix = "val_"
    if not panels:  # runs without a validation split: compare the training curves
        panels, prefix = names, ""
    if not panels:
        from dltrain.errors import RunError

        raise RunError("none of the runs has finished an epoch yet", hint="there are no curves to compare")
    figure, grid = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    figure.subplots_adjust(left=0.13 / len(panels), right=1 - 0.03 / len(panels), top=0.91, bottom=0.12,
                           wspace=0.25)
    for axes, metric in zip(grid.flat, panels):
        column = prefix + metric
        for label, rows in curves:
            points = [(int(row.get("epoch", i + 1)), row[column]) for i, row in enumerate(rows) if column in row]
            if points:
                axes.plot(*zip(*points), marker="o", label=label)
        axes.set_xlabel("epoch")
        axes.set_ylabel(column)
        axes.set_title(column)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    return save_figure(figure, path)
