"""A sweep's results: leaderboard.csv (best first) and Optuna's plots, from the study alone."""

from __future__ import annotations

import csv
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain import runs
from dltrain.errors import first_line
from dltrain.sweep.space import Space

LEADERBOARD_FILE = "leaderboard.csv"
PLOTS_DIR = "plots"
# Optuna's plots, by file name: the function of optuna.visualization.matplotlib that draws each.
PLOTS = {"optimization_history.png": "plot_optimization_history",
         "param_importances.png": "plot_param_importances",
         "parallel_coordinate.png": "plot_parallel_coordinate"}
# The leaderboard's order: finished trials best first, then those still running, then failures.
_STATE_ORDER = {"COMPLETE": 0, "PRUNED": 1, "RUNNING": 2, "FAIL": 3}


@dataclass
class Row:
    """One trial on the leaderboard."""

    trial: int
    state: str
    value: float | None
    params: dict[str, Any]
    run_dir: str
    epoch: int | None = None  # the last epoch it reported

    def cells(self, keys: list[str]) -> list[str]:
        """The CSV cells: trial, state, value, one per parameter key, run_dir."""
        def text(value: Any) -> str:
            return "" if value is None else value if isinstance(value, str) else json.dumps(value)

        return [str(self.trial), self.state, "" if self.value is None else repr(self.value),
                *(text(self.params.get(k)) for k in keys), self.run_dir]


def shown(value: Any) -> str:
    """A parameter value for a table on screen: floats to 4 digits, lists and mappings as JSON."""
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else value if isinstance(value, str) else json.dumps(value)


def leaderboard(trials: list[Any], space: Space, goal: str) -> list[Row]:
    """The study's trials best first (WAITING slots not started yet are left out)."""
    sign = -1.0 if goal == "maximize" else 1.0
    found = []
    for trial in trials:
        state = trial.state.name
        if state not in _STATE_ORDER:
            continue
        steps = trial.intermediate_values
        found.append(Row(trial.number, state, trial.value if state in ("COMPLETE", "PRUNED") else None,
                         space.decode(trial.params), str(trial.user_attrs.get("run_dir", "")),
                         max(steps) if steps else None))
    found.sort(key=lambda r: (_STATE_ORDER[r.state], sign * r.value if r.value is not None else 0.0, r.trial))
    return found


def write_leaderboard(path: Path, rows: list[Row], keys: list[str]) -> None:
    """Write leaderboard.csv atomically: trial, state, value, the parameter keys as written, run_dir."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["trial", "state", "value", *keys, "run_dir"])
    writer.writerows(row.cells(keys) for row in rows)
    runs.atomic_write_text(path, text.getvalue())


def write_plots(study: Any, folder: Path) -> tuple[list[Path], list[str]]:
    """Optuna's optimization history, parameter importances and parallel coordinates as PNGs; and notes
    on those it could not draw (importances need two finished trials)."""
    from optuna.visualization import matplotlib as optuna_plots

    from dltrain.runs import pyplot, save_figure

    pyplot()  # the Agg backend before Optuna touches pyplot
    written, notes = [], []
    for file_name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = getattr(optuna_plots, function)(study)
        except Exception as error:  # too few trials, or parameters that never varied
            notes.append(f"no {file_name}: {first_line(error)}")
            continue
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        figure.set_size_inches(10, 6)
        figure.tight_layout()
        written.append(save_figure(figure, folder / PLOTS_DIR / file_name))
    return written, notes


def refresh(study: Any, space: Space, goal: str, folder: Path) -> list[Row]:
    """Rewrite the sweep folder's leaderboard.csv from the study as it is now; return its rows."""
    rows = leaderboard(study.get_trials(deepcopy=False), space, goal)
    write_leaderboard(folder / LEADERBOARD_FILE, rows, space.keys())
    return rows
