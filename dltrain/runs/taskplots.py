"""The test-split report of the tasks that have no confusion matrix: forecasts drawn against the truth
(time series), and per-class precision, recall and F1 (multi-label), written as a CSV and drawn."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from dltrain.runs.folders import atomic_write_text
from dltrain.runs.plots import PLOTS_DIR, pyplot, save_figure

FORECAST_FILE = "forecast.png"
PER_CLASS_FILE = "per_class.csv"
PER_CLASS_PLOT = "per_class.png"
THRESHOLD = 0.5  # a tag is predicted when its probability is over this
_SHOWN_STEPS = 1000  # the forecast plot shows at most this many test windows (the first ones)


def per_class(y_true: np.ndarray, probabilities: np.ndarray, names: list[str]) -> list[dict[str, float | str]]:
    """Each class's precision, recall, F1 and support (true examples) at THRESHOLD; then the micro average
    (over every decision) and the macro average (the mean over classes)."""
    truth, predicted = y_true > 0.5, probabilities > THRESHOLD
    hit = (truth & predicted).sum(axis=0).astype(np.float64)
    said, real = predicted.sum(axis=0).astype(np.float64), truth.sum(axis=0).astype(np.float64)
    rows: list[dict[str, float | str]] = []

    def row(name: str, tp: float, p: float, t: float) -> dict[str, float | str]:
        precision = tp / p if p else 0.0
        recall = tp / t if t else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"class": name, "precision": precision, "recall": recall, "f1": f1, "support": int(t)}

    for j, name in enumerate(names):
        rows.append(row(name, hit[j], said[j], real[j]))
    rows.append(row("micro avg", hit.sum(), said.sum(), real.sum()))
    macro = {key: float(np.mean([r[key] for r in rows[:-1]])) for key in ("precision", "recall", "f1")}
    rows.append({"class": "macro avg", **macro, "support": int(real.sum())})
    return rows


def write_per_class(run_dir: Path, rows: list[dict[str, float | str]]) -> Path:
    """per_class.csv in the run folder: one line per class, then the micro and macro averages."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["class", "precision", "recall", "f1", "support"])
    for r in rows:
        writer.writerow([r["class"], *(f"{float(r[k]):.4f}" for k in ("precision", "recall", "f1")), r["support"]])
    path = run_dir / PER_CLASS_FILE
    atomic_write_text(path, out.getvalue())
    return path


def draw_per_class(run_dir: Path, rows: list[dict[str, float | str]]) -> Path:
    """Grouped bars of each class's precision, recall and F1 (the averages last)."""
    plt = pyplot()
    names = [str(r["class"]) for r in rows]
    figure, axes = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) + 2), 4.5))
    place = np.arange(len(rows))
    for k, key in enumerate(("precision", "recall", "f1")):
        axes.bar(place + (k - 1) * 0.27, [float(r[key]) for r in rows], width=0.27, label=key)
    axes.set_xticks(place, names, rotation=45, ha="right")
    axes.set_ylim(0, 1.2)  # room for the legend above the bars
    axes.set_title(f"test split, per class (a tag is predicted over {THRESHOLD})")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, ncol=3, loc="upper center")
    figure.tight_layout()
    return save_figure(figure, run_dir / PLOTS_DIR / PER_CLASS_PLOT)


def draw_forecast(run_dir: Path, truth: np.ndarray, forecast: np.ndarray, labels: list[str], horizon: int) -> Path:
    """The forecasts on the test windows against the true values, one panel per label column."""
    plt = pyplot()
    truth = truth.reshape(len(truth), -1)[:_SHOWN_STEPS]
    forecast = np.asarray(forecast, dtype=np.float64).reshape(len(forecast), -1)[:_SHOWN_STEPS]
    panels = truth.shape[1]
    figure, grid = plt.subplots(panels, 1, figsize=(9, 3.2 * panels), squeeze=False)
    for j, axes in enumerate(grid.flat):
        name = labels[j] if j < len(labels) else f"output_{j}"
        axes.plot(truth[:, j], label="truth", linewidth=1.2)
        if j < forecast.shape[1]:
            axes.plot(forecast[:, j], label="forecast", linewidth=1.0, alpha=0.85)
        axes.set_title(f"{name}: test windows, {horizon} row{'s' if horizon != 1 else ''} ahead")
        axes.set_xlabel("test window")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, run_dir / PLOTS_DIR / FORECAST_FILE)
