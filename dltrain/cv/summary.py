"""cv.json and cv.csv: each fold's metrics (as its metrics.json has them: the kept epoch's train and validation
figures, the test split's), and their mean and sample standard deviation over the folds that finished."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

from dltrain import runs

CV_JSON = "cv.json"
CV_CSV = "cv.csv"
SPLITS = ("val", "test", "train")


@dataclass
class FoldRow:
    """One fold: its run folder, how it ended, and its metrics (`val_accuracy`, `test_loss`, ...)."""

    fold: int
    run_dir: Path
    state: str
    metrics: dict[str, float] = field(default_factory=dict)


def fold_row(fold: int, run_dir: Path, state: str) -> FoldRow:
    """Fold `fold`'s row: the metrics of a finished fold, flattened as `<split>_<metric>`."""
    found = runs.read_metrics(run_dir) if state == "finished" else {}
    metrics = {f"{split}_{name}": float(value) for split in SPLITS for name, value in (found.get(split) or {}).items()
               if isinstance(value, (int, float))}
    return FoldRow(fold, run_dir, state, metrics)


def columns(rows: list[FoldRow]) -> list[str]:
    """The metric columns, split by split (validation, test, train), in the order the runs logged them."""
    return list(dict.fromkeys(name for split in SPLITS for row in rows for name in row.metrics
                              if name.startswith(f"{split}_")))


def mean_std(rows: list[FoldRow]) -> dict[str, dict[str, float]]:
    """Each metric's mean and sample standard deviation (n - 1; 0 for one fold) over the finished folds."""
    found: dict[str, dict[str, float]] = {}
    for name in columns(rows):
        values = [row.metrics[name] for row in rows if row.state == "finished" and name in row.metrics]
        if not values:
            continue
        mean = math.fsum(values) / len(values)
        var = math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
        found[name] = {"mean": mean, "std": math.sqrt(var)}
    return found


def write(cv_dir: Path, rows: list[FoldRow], folds: int, stratified: bool) -> dict[str, dict[str, float]]:
    """Write cv.json and cv.csv; return each metric's mean and standard deviation."""
    stats = mean_std(rows)
    names = columns(rows)
    runs.atomic_write_json(cv_dir / CV_JSON, {
        "folds": folds, "stratified": stratified, "finished": sum(r.state == "finished" for r in rows),
        "metrics": stats, "std": "sample standard deviation (n - 1) over the finished folds",
        "runs": [{"fold": r.fold, "run_dir": r.run_dir.name, "state": r.state, "metrics": r.metrics} for r in rows]})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["fold", "state", *names])
    for r in rows:
        writer.writerow([r.fold, r.state, *(repr(r.metrics[n]) if n in r.metrics else "" for n in names)])
    for which in ("mean", "std"):
        writer.writerow([which, "", *(repr(stats[n][which]) if n in stats else "" for n in names)])
    runs.atomic_write_text(cv_dir / CV_CSV, text.getvalue())
    return stats
