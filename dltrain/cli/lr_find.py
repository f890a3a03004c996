"""`dltrain lr-find`: the learning-rate range test run, its suggestion and the --set line shown (app.py
registers it)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from dltrain.cli.kit import SetOption, TrustOption, err, errors_to_exit, out


class _Bar:
    """A progress bar over the test's steps, shown from the first step (nothing before, if the config fails)."""

    def __init__(self) -> None:
        self.progress = None
        self.task = None

    def update(self, step: int, total: int) -> None:
        if self.progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.progress = Progress(TextColumn("range test"), BarColumn(), MofNCompleteColumn(), console=err,
                                     transient=True)
            self.progress.start()
            self.task = self.progress.add_task("steps", total=total)
        self.progress.update(self.task, completed=step)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@errors_to_exit
def lr_find(
    config: Path = typer.Argument(..., help="The YAML config file."),
    min_lr: float = typer.Option(1e-7, "--min-lr", help="The first step's learning rate."),
    max_lr: float = typer.Option(10.0, "--max-lr", help="The last step's learning rate (if the loss has not "
                                                        "diverged before)."),
    steps: int = typer.Option(100, "--steps", min=5, help="Training steps, the rate rising exponentially between them."),
    set_: Optional[list[str]] = SetOption,
    output_dir: Path = typer.Option(Path("outputs"), "--output-dir", help="Where the lr-find folder is created."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    trust_code: bool = TrustOption,
) -> None:
    """The learning-rate range test: from the config's initial weights, one step per rate, the rate rising
    exponentially until the smoothed loss diverges; suggests the rate where it falls fastest. Keeps no weights."""
    from dltrain.load import load_config

    loaded = load_config(config, set_ or [], trust_code=trust_code)
    from dltrain.training import find_learning_rate

    bar = _Bar() if progress else None
    try:
        result = find_learning_rate(loaded, output_dir, min_lr=min_lr, max_lr=max_lr, steps=steps,
                                    step_done=bar.update if bar is not None else lambda step, total: None)
    finally:
        if bar is not None:
            bar.close()
    for note in result.notes:
        err.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    say = dict(markup=False, highlight=False, soft_wrap=True)
    out.print(f"lr-find folder: {result.folder}", **say)
    out.print(f"stopped: {result.stop}", **say)
    if result.suggestion is not None:
        out.print(f"suggested learning rate: {result.shown_suggestion} (steepest descent of the smoothed loss)", **say)
        out.print(f"use it: dltrain train {config} {result.set_line}", **say)
    out.print(f"plot: {result.png}", **say)
