"""A run's history.csv and metrics.json read back for tables, plots and comparisons. No TensorFlow."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import dltrain.runs.folders as runs

# Columns of history.csv that are not metrics.
BOOKKEEPING = ("epoch", "phase", "seconds", "learning_rate")
# Metric names that are better when lower (losses and errors); everything else (accuracy, auc, ...) is
# better when higher. Keras knows this from metric objects; a run folder only has the names.
_LOWER = ("loss", "error", "mae", "mse", "mape", "msle", "crossentropy", "hinge", "divergence", "poisson")


def read_history(run_dir: Path) -> list[dict[str, float]]:
    """history.csv as rows of floats (empty when the run has no epoch yet)."""
    path = run_dir / runs.HISTORY_FILE
    try:
        text = path.read_text()
    except OSError:
        return []
    rows = []
    for row in csv.DictReader(text.splitlines()):
        rows.append({k: _number(v) for k, v in row.items() if k})
    return rows


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """metrics.json, or {} for a run that has not finished."""
    try:
        found = json.loads((run_dir / runs.METRICS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def metric_names(rows: list[dict[str, float]]) -> list[str]:
    """The metrics recorded per epoch (`loss`, `accuracy`, ...), without the `val_` twins."""
    columns = dict.fromkeys(k for row in rows for k in row)
    return [k for k in columns if not k.startswith("val_") and k not in BOOKKEEPING]


def higher_is_better(name: str) -> bool:
    """Whether a larger value of metric `name` (with or without `val_`/`test_`) is better."""
    base = name.lower().removeprefix("val_")
    return not any(token in base for token in _LOWER)


def primary_metric(names: list[str]) -> str:
    """The metric a person looks at first: the first compiled metric (accuracy, ...), else the loss."""
    for name in names:
        if not name.endswith("loss") and name not in BOOKKEEPING:
            return name
    return "loss"


def best_epoch(rows: list[dict[str, float]], column: str, higher: bool | None = None) -> tuple[float, int] | None:
    """The best finite value of `column` and the epoch it was reached in, or None."""
    higher = higher_is_better(column) if higher is None else higher
    found = [(row[column], int(row.get("epoch", i + 1))) for i, row in enumerate(rows)
             if column in row and math.isfinite(row[column])]
    if not found:
        return None
    return max(found, key=lambda item: item[0]) if higher else min(found, key=lambda item: item[0])
