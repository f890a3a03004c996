"""Runs at a glance for `dltrain runs` and `dltrain compare`: read from the run folders alone, no TensorFlow."""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltrain.errors import ConfigError, DltrainError, RunError
import dltrain.runs.folders as runs
import dltrain.runs.history as history

SORT_KEYS = ("date", "name", "status", "epochs", "val", "test", "duration")


@dataclass
class RunSummary:
    """One run: its state, its headline metric (best validation value, test value) and its training time."""

    info: runs.RunInfo
    metric: str
    best_val: tuple[float, int] | None
    test: float | None
    seconds: float
    config: dict[str, Any] | None
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run folder's name."""
        return self.info.path.name

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (`dltrain runs --json`)."""
        return {**self.info.to_json(), "name": self.name, "metric": self.metric,
                "best_val": self.best_val[0] if self.best_val else None,
                "best_val_epoch": self.best_val[1] if self.best_val else None,
                "test": self.test, "train_seconds": round(self.seconds, 2),
                "test_metrics": self.metrics.get("test")}


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """A run's config.yaml as plain data (read with dltrain's safe YAML reader), or None."""
    from dltrain.config import read_yaml

    try:
        found, _ = read_yaml(run_dir / runs.CONFIG_FILE)
    except DltrainError:
        return None
    return found if isinstance(found, dict) else None


def summarize(info: runs.RunInfo) -> RunSummary:
    """What `dltrain runs` shows of one run folder."""
    rows = history.read_history(info.path)
    metrics = history.read_metrics(info.path)
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    names = list(test) or history.metric_names(rows)
    metric = history.primary_metric(names)
    best = history.best_epoch(rows, f"val_{metric}")
    value = test.get(metric)
    seconds = sum(row.get("seconds", 0.0) for row in rows if math.isfinite(row.get("seconds", math.nan)))
    return RunSummary(info, metric, best, float(value) if isinstance(value, (int, float)) else None, seconds,
                      read_config(info.path), metrics, rows)


def _get(config: dict[str, Any] | None, key: str) -> tuple[bool, Any]:
    from dltrain.config import get_path, parse_ref

    path = parse_ref(key)
    if path is None:
        raise ConfigError(f"cannot read key path '{key}'", hint="write it like name=mnist* or training.epochs=5")
    return get_path(config, path)


def _matches(summary: RunSummary, key: str, pattern: str) -> bool:
    if key == "name":
        found = [summary.name, (summary.config or {}).get("name", "")]
    elif key in ("status", "state"):
        found = [summary.info.state]
    else:
        present, value = _get(summary.config, key)
        if not present:
            return False
        found = [value if isinstance(value, str) else json.dumps(value)]
    glob = any(c in pattern for c in "*?[")
    return any(fnmatch.fnmatchcase(str(text), pattern) if glob else
               (pattern in str(text) if key == "name" else str(text) == pattern) for text in found)


def parse_filters(filters: list[str]) -> list[tuple[str, str]]:
    """`name=mnist*` style filters as (key, pattern) pairs."""
    pairs = []
    for text in filters:
        key, sep, pattern = text.partition("=")
        if not sep or not key.strip():
            raise RunError(f"cannot read filter '{text}'",
                           hint="write KEY=VALUE: name=mnist*, status=finished, optimizer.Adam.learning_rate=0.001")
        pairs.append((key.strip(), pattern.strip()))
    return pairs


def _sort_key(sort: str, summary: RunSummary) -> Any:
    missing = float("inf")
    if sort == "name":
        return summary.name
    if sort == "status":
        return summary.info.state
    if sort == "epochs":
        return -(summary.info.epoch or 0)
    if sort == "duration":
        return -summary.seconds
    value = summary.best_val[0] if sort == "val" and summary.best_val else summary.test if sort == "test" else None
    if value is None:
        return missing
    return -value if history.higher_is_better(summary.metric) else value


def run_summaries(output_dir: Path, *, sort: str = "date", filters: list[str] | None = None) -> list[RunSummary]:
    """The runs in `output_dir` matching every filter, newest first or best first by `sort`."""
    if sort not in SORT_KEYS:
        raise RunError(f"cannot sort by '{sort}'", hint=f"use one of: {', '.join(SORT_KEYS)}")
    pairs = parse_filters(filters or [])
    found = [summarize(info) for info in runs.list_runs(output_dir)]
    found = [s for s in found if all(_matches(s, key, pattern) for key, pattern in pairs)]
    if sort != "date":  # list_runs gives newest first; a stable sort keeps that order among equals
        found.sort(key=lambda s: _sort_key(sort, s))
    return found


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
