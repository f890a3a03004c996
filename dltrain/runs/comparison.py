"""`dltrain compare`: the config keys that differ between runs, and their metrics side by side. No TensorFlow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain.errors import RunError
import dltrain.runs.folders as runs
import dltrain.runs.overview as overview


@dataclass
class Comparison:
    """Rows of (label, one cell per run)."""

    runs: list[overview.RunSummary]
    differences: list[tuple[str, list[str]]]
    metrics: list[tuple[str, list[str]]]


def _text(found: bool, value: Any) -> str:
    if not found:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value)


def config_differences(configs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The dotted keys whose values are not the same in every config, with each config's value."""
    keys: dict[str, None] = {}
    for other in configs[1:]:
        for key, _, _ in runs.changed_keys(configs[0], other):
            keys.setdefault(key)
    return [(key, [_text(*overview._get(config, key)) for config in configs]) for key in keys]


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else ""


def compare(run_dirs: list[Path]) -> Comparison:
    """Compare runs: config differences (resolved configs) and final, best and test metrics."""
    if len(run_dirs) < 2:
        raise RunError("compare needs at least two runs", hint="dltrain compare outputs/a outputs/b")
    summaries = []
    for run_dir in run_dirs:
        runs.run_file(run_dir, runs.CONFIG_FILE)
        info = runs.run_info(run_dir)
        if info is None:
            raise RunError(f"'{run_dir}' is not a dltrain run folder")
        summaries.append(overview.summarize(info))
    configs = [s.config or {} for s in summaries]
    metrics: list[tuple[str, list[str]]] = [
        ("status", [s.info.state for s in summaries]),
        ("epochs", [f"{s.info.epoch if s.info.epoch is not None else '?'}/{s.info.epochs or '?'}" for s in summaries]),
        ("train time", [overview.duration(s.seconds) for s in summaries]),
        # EarlyStopping(restore_best_weights=True) keeps an earlier epoch; the rows below are that epoch's.
        ("weights of epoch", [str(s.metrics.get("weights_epoch", "")) for s in summaries]),
    ]
    for metric in dict.fromkeys(s.metric for s in summaries):
        cells = []
        for s in summaries:
            best = s.best_val if s.metric == metric else None
            cells.append(f"{best[0]:.4f} (epoch {best[1]})" if best else "")
        metrics.append((f"best val_{metric}", cells))
    for split in ("train", "val", "test"):
        names = list(dict.fromkeys(k for s in summaries for k in (s.metrics.get(split) or {})))
        for name in names:
            metrics.append((f"{split} {name}", [_number((s.metrics.get(split) or {}).get(name)) for s in summaries]))
    return Comparison(summaries, config_differences(configs), metrics)


def plot(comparison: Comparison, out: Path) -> Path:
    """One PNG with the runs' validation curves overlaid."""
    import dltrain.runs.plots as plots

    return plots.draw_comparison([(s.name, s.rows) for s in comparison.runs], out)
